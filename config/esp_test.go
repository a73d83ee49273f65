package config

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestESPSection(t *testing.T) {
	c, err := Parse("t.toml", []byte("data_dir = \"/d\"\n[esp]\ndatabase = \"postgres://postgres@127.0.0.1:5432/esp\"\nimport_batch = 500\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.ESP.DatabaseDSN(c.DataDir) != "postgres://postgres@127.0.0.1:5432/esp" || c.ESP.ImportBatch != 500 || c.ESP.ImportPath(c.DataDir) != filepath.Join("/d", "imports") {
		t.Fatalf("esp %+v", c.ESP)
	}
	d := Default()
	if d.ESP.DatabaseDSN("/x") != filepath.Join("/x", "esp.db") || d.ESP.MaxUploadBytes != 1<<30 || d.ESP.FlowFrequencyCap != 0 || d.ESP.FlowFrequencyWindow.Hours() != 24 {
		t.Fatalf("defaults %+v", d.ESP)
	}
	for _, tc := range []struct{ toml, want string }{
		{"[esp]\nimport_batch = 0\n", "import_batch"},
		{"[esp]\ndatabase = \"mysql://x\"\n", "database"},
		{"[esp]\nmax_upload_bytes = -1\n", "max_upload_bytes"},
		{"[esp]\nflow_frequency_cap = -1\n", "flow_frequency_cap"},
		{"[esp]\nflow_frequency_window = \"0s\"\n", "flow_frequency_window"},
		{"[esp]\ndatabse = \"x\"\n", `unknown key "esp.databse"`},
	} {
		if _, err := Parse("t.toml", []byte(tc.toml)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.toml, err, tc.want)
		}
	}
}
