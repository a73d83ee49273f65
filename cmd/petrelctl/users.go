package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
)

// dashUser mirrors account.User's JSON.
type dashUser struct {
	ID    int64  `json:"id"`
	Email string `json:"email"`
	Name  string `json:"name"`
	Role  string `json:"role"`
}

func userCommands() map[string]command {
	return map[string]command{
		"users add":  {"-email ADDR [-name NAME] [-role owner|marketer|viewer]: create a dashboard user; the password is read from the first line of stdin (or PETREL_PASSWORD)", usersAdd},
		"users list": {"dashboard users and their roles", usersList},
	}
}

func usersAdd(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("users add", flag.ContinueOnError)
	fs.SetOutput(e.Err)
	email := fs.String("email", "", "the user's email address (their login)")
	name := fs.String("name", "", "display name")
	role := fs.String("role", "owner", "owner, marketer or viewer")
	pos, err := parseInterspersed(fs, args)
	if err != nil || len(pos) != 0 || *email == "" {
		return errUsage
	}
	pw := os.Getenv("PETREL_PASSWORD")
	if pw == "" {
		fmt.Fprint(e.Err, "password (10+ characters, one line): ")
		line, err := bufio.NewReader(os.Stdin).ReadString('\n')
		if err != nil && line == "" {
			return fmt.Errorf("read password: %w", err)
		}
		pw = strings.TrimRight(line, "\r\n")
	}
	if pw == "" {
		return errors.New("empty password")
	}
	var u dashUser
	if err := e.call(ctx, http.MethodPost, "/api/v1/users", map[string]any{"email": *email, "name": *name, "role": *role, "password": pw}, &u); err != nil {
		return err
	}
	if e.JSON {
		return e.printJSON(u)
	}
	fmt.Fprintf(e.Out, "created %s user %s (id %d); sign in at %s/ui/\n", u.Role, u.Email, u.ID, strings.TrimRight(e.URL, "/"))
	return nil
}

func usersList(ctx context.Context, e *env, args []string) error {
	if len(args) != 0 {
		return errUsage
	}
	var out struct {
		Users []dashUser `json:"users"`
	}
	if err := e.call(ctx, http.MethodGet, "/api/v1/users", nil, &out); err != nil {
		return err
	}
	if e.JSON {
		return e.printJSON(out)
	}
	tw := tabwriter.NewWriter(e.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tEMAIL\tROLE\tNAME")
	for _, u := range out.Users {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", u.ID, u.Email, u.Role, u.Name)
	}
	return tw.Flush()
}
