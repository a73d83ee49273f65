package bench

import "context"

func (r *Runner) queue10M(ctx context.Context) []*Line { return nil }
