package suppress

import (
	"os"
	"strconv"
)

func getenvInt(k string) int {
	v, _ := strconv.Atoi(os.Getenv(k))
	return v
}
