package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/petrel-mta/petrel/account"
	"github.com/petrel-mta/petrel/audience"
)

// openAccounts sets up the dashboard's users, sessions and database API
// keys in the ESP database, and says how to create the first user when
// there is none.
func openAccounts(ctx context.Context, st *audience.Store, log *slog.Logger) (*account.Store, error) {
	a, err := account.Open(ctx, st.DB(), st.Postgres(), account.Options{})
	if err != nil {
		return nil, fmt.Errorf("accounts: %w", err)
	}
	if n, err := a.CountUsers(ctx); err == nil && n == 0 {
		log.Info("no dashboard user yet: create the first owner with `petrelctl users add -email you@example.com -role owner` (it asks for the password), then open /ui/ on the HTTP listener")
	}
	return a, nil
}
