package audience

import (
	"context"
	"slices"
	"strings"
)

// ContactsByID returns the contacts of an audience with the given ids
// (missing ids are left out), in one query per 1,000 ids: for readers
// that handle contacts a page at a time (the flow runner).
func (s *Store) ContactsByID(ctx context.Context, audience int64, ids []int64) ([]Contact, error) {
	var out []Contact
	for chunk := range slices.Chunk(ids, 1000) {
		args := make([]any, 0, len(chunk)+1)
		args = append(args, audience)
		for _, id := range chunk {
			args = append(args, id)
		}
		cs, err := s.contacts(ctx, s.db, audience, contactSelect+` WHERE c.audience_id = ? AND c.id IN (`+strings.TrimSuffix(strings.Repeat("?,", len(chunk)), ",")+`)`, args...)
		if err != nil {
			return nil, err
		}
		out = append(out, cs...)
	}
	return out, nil
}
