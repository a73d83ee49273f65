package main

import (
	"context"
	"flag"
	"fmt"
	"path/filepath"

	"github.com/petrel-mta/petrel/policy/dkim"
)

func dkimCommands() map[string]command {
	return map[string]command{
		"dkim keygen": {"DOMAIN SELECTOR [-algo rsa|ed25519] -data-dir DIR: write a key under DIR/dkim and print its DNS record (local, no daemon)", dkimKeygen},
	}
}

func dkimKeygen(_ context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("dkim keygen", flag.ContinueOnError)
	fs.SetOutput(e.Err)
	algo := fs.String("algo", dkim.AlgoRSA, "rsa (2048 bits) or ed25519")
	dataDir := fs.String("data-dir", "", "petreld's data_dir (the key goes to DATA_DIR/dkim/DOMAIN/SELECTOR.key)")
	pos, err := parseInterspersed(fs, args)
	if err != nil || len(pos) != 2 || *dataDir == "" {
		return errUsage
	}
	rec, err := dkim.Keygen(filepath.Join(*dataDir, "dkim"), pos[0], pos[1], *algo)
	if err != nil {
		return err
	}
	if e.JSON {
		return e.printJSON(map[string]string{"record": rec, "key_file": dkim.KeyPath(filepath.Join(*dataDir, "dkim"), pos[0], pos[1])})
	}
	fmt.Fprintf(e.Err, "wrote %s (petreld picks it up on restart or `petrelctl domain add`)\npublish:\n", dkim.KeyPath(filepath.Join(*dataDir, "dkim"), pos[0], pos[1]))
	fmt.Fprintln(e.Out, rec)
	return nil
}
