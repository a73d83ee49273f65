package campaign

import "context"

// CheckError is a pre-send check that blocks the send (HTTP 422).
type CheckError struct {
	Result CheckResult
}

func (e *CheckError) Error() string { return "campaign: pre-send check failed" }

// CheckResult is the outcome of a pre-send check.
type CheckResult struct {
	OK bool `json:"ok"`
}

// checkBeforeSend runs the pre-send check; a blocking result is a
// *CheckError.
func (s *Service) checkBeforeSend(ctx context.Context, c Campaign) error { return nil }

// Check runs the pre-send check of id.
func (s *Service) Check(ctx context.Context, id string) (CheckResult, error) {
	return CheckResult{OK: true}, nil
}
