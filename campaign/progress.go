package campaign

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/petrel-mta/petrel/internal/sqlq"
)

// SQLProgress keeps campaign states in the ESP database (SQLite or
// PostgreSQL), one row per campaign, written in its own transaction after
// each committed page.
type SQLProgress struct {
	db *sql.DB
	// ph is the placeholder style: "?" (SQLite) or "$" (PostgreSQL).
	ph string
}

// NewSQLProgress creates the progress table if needed. postgres selects
// $n placeholders.
func NewSQLProgress(ctx context.Context, db *sql.DB, postgres bool) (*SQLProgress, error) {
	p := &SQLProgress{db: db, ph: "?"}
	if postgres {
		p.ph = "$"
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS campaign_progress (
		campaign TEXT PRIMARY KEY,
		state    TEXT NOT NULL
	)`); err != nil {
		return nil, fmt.Errorf("campaign: progress table: %w", err)
	}
	return p, nil
}

func (p *SQLProgress) arg(n int) string { return sqlq.Placeholder(p.ph == "$", n) }

// Load implements Progress; an unknown campaign starts at the beginning.
func (p *SQLProgress) Load(ctx context.Context, campaign string) (State, error) {
	raw, err := p.LoadRaw(ctx, campaign)
	if err != nil || raw == "" {
		return State{}, err
	}
	var st State
	if err := json.Unmarshal([]byte(raw), &st); err != nil {
		return State{}, fmt.Errorf("campaign: corrupt progress of %s: %w", campaign, err)
	}
	return st, nil
}

// Save implements Progress.
func (p *SQLProgress) Save(ctx context.Context, campaign string, st State) error {
	raw, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return p.SaveRaw(ctx, campaign, string(raw))
}

// LoadRaw returns the JSON stored under key ("" when none): the plans
// of multi-pass sends live next to their cursors.
func (p *SQLProgress) LoadRaw(ctx context.Context, key string) (string, error) {
	var raw string
	err := p.db.QueryRowContext(ctx, "SELECT state FROM campaign_progress WHERE campaign = "+p.arg(1), key).Scan(&raw)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("campaign: load %s: %w", key, err)
	}
	return raw, nil
}

// SaveRaw stores raw under key.
func (p *SQLProgress) SaveRaw(ctx context.Context, key, raw string) error {
	_, err := p.db.ExecContext(ctx, "INSERT INTO campaign_progress (campaign, state) VALUES ("+p.arg(1)+", "+p.arg(2)+
		") ON CONFLICT (campaign) DO UPDATE SET state = excluded.state", key, raw)
	if err != nil {
		return fmt.Errorf("campaign: save %s: %w", key, err)
	}
	return nil
}
