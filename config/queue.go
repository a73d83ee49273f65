package config

import (
	"fmt"
	"strconv"
	"strings"
)

// QueueConfig is the [queue] section: the spool on disk.
type QueueConfig struct {
	// MinFreeSpace is the free space the spool's file system must keep:
	// below it new mail is refused (SMTP 452 4.3.1, HTTP 507) while the
	// queue is still delivered. A size ("1GiB", "512MiB", "500MB",
	// bytes) or a percentage of the file system ("5%"); "0" disables.
	MinFreeSpace FreeSpace `toml:"min_free_space"`
}

func defaultQueue() QueueConfig {
	return QueueConfig{MinFreeSpace: FreeSpace{Bytes: 1 << 30}}
}

// FreeSpace is a byte count or a percentage, written "1GiB" or "5%".
type FreeSpace struct {
	Bytes   int64
	Percent float64
}

var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1},
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (f *FreeSpace) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	if p, ok := strings.CutSuffix(s, "%"); ok {
		v, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || v < 0 || v >= 100 {
			return fmt.Errorf("invalid percentage %q: want 0 to 99.9", b)
		}
		*f = FreeSpace{Percent: v}
		return nil
	}
	mult := int64(1)
	for _, u := range sizeUnits {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = strings.TrimSpace(n), u.mult
			break
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 || v > (1<<62)/mult {
		return fmt.Errorf("invalid size %q: want e.g. \"1GiB\", \"500MB\", \"5%%\" or a byte count", b)
	}
	*f = FreeSpace{Bytes: v * mult}
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (f FreeSpace) MarshalText() ([]byte, error) {
	if f.Percent > 0 {
		return []byte(strconv.FormatFloat(f.Percent, 'f', -1, 64) + "%"), nil
	}
	return []byte(strconv.FormatInt(f.Bytes, 10)), nil
}
