package campaign

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// The campaign tables live in the ESP database next to the audience's.
// The first tables were created with CREATE TABLE IF NOT EXISTS by their
// constructors; everything since is a numbered migration recorded in
// campaign_schema, each applied once in one transaction with its version
// bump (the same scheme as audience's migrations, kept separate so the
// two packages version their own tables).
var campaignMigrations = [][]string{
	1: {
		// Times are Unix seconds, 0 = not yet.
		`ALTER TABLE campaigns ADD COLUMN send_at BIGINT NOT NULL DEFAULT 0`,
		`ALTER TABLE campaigns ADD COLUMN started_at BIGINT NOT NULL DEFAULT 0`,
		`ALTER TABLE campaigns ADD COLUMN finished_at BIGINT NOT NULL DEFAULT 0`,
		`ALTER TABLE campaigns ADD COLUMN updated_at BIGINT NOT NULL DEFAULT 0`,
		// The last pre-send check (JSON CheckResult) and the status reason.
		`ALTER TABLE campaigns ADD COLUMN check_result TEXT NOT NULL DEFAULT ''`,
		`CREATE INDEX campaigns_due ON campaigns (status, send_at)`,
		`CREATE INDEX campaigns_created ON campaigns (created, id)`,
		// Test sends: never counted in the campaign's progress.
		`CREATE TABLE campaign_tests (
			campaign TEXT NOT NULL,
			seq      BIGINT NOT NULL,
			rcpt     TEXT NOT NULL,
			queue_id TEXT NOT NULL DEFAULT '',
			error    TEXT NOT NULL DEFAULT '',
			at       BIGINT NOT NULL,
			PRIMARY KEY (campaign, seq, rcpt))`,
	},
	2: {
		// The API key a campaign sends under (Spec.APIKey); NULL: none.
		`ALTER TABLE campaigns ADD COLUMN api_key TEXT`,
	},
}

// migrateCampaigns applies the campaign migrations db has not seen.
func migrateCampaigns(ctx context.Context, db *sql.DB, pg bool) error {
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS campaign_schema (version INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("campaign: migrate: %w", err)
	}
	var cur int
	err := db.QueryRowContext(ctx, `SELECT version FROM campaign_schema`).Scan(&cur)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		if _, err := db.ExecContext(ctx, `INSERT INTO campaign_schema (version) VALUES (0)`); err != nil {
			return fmt.Errorf("campaign: migrate: %w", err)
		}
	case err != nil:
		return fmt.Errorf("campaign: migrate: %w", err)
	}
	for v := cur + 1; v < len(campaignMigrations); v++ {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("campaign: migration %d: %w", v, err)
		}
		for _, st := range campaignMigrations[v] {
			if _, err := tx.ExecContext(ctx, st); err != nil {
				tx.Rollback()
				return fmt.Errorf("campaign: migration %d: %w", v, err)
			}
		}
		q := `UPDATE campaign_schema SET version = ?`
		if pg {
			q = `UPDATE campaign_schema SET version = $1`
		}
		if _, err := tx.ExecContext(ctx, q, v); err != nil {
			tx.Rollback()
			return fmt.Errorf("campaign: migration %d: %w", v, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("campaign: migration %d: %w", v, err)
		}
	}
	return nil
}
