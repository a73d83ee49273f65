//go:build !race

package queue

// raceEnabled scales heavy tests down under the race detector.
const raceEnabled = false
