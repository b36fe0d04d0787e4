// compose-config loads a compose file the way `docker compose config` does, with the compose
// specification's own loader (github.com/compose-spec/compose-go, which Docker Compose uses):
// schema, interpolation of ${...} from an env file, YAML merges, profiles and cross-references
// (depends_on, secrets, configs, volumes). It needs no Docker engine, so CI can run it.
//
//	go run ./dev/compose-config -env-file compose/.env.example -profile observability compose/docker-compose.yml
//
// The process environment is deliberately ignored: the result depends on the files only.
// Exit status 0 and a one-line summary when the file loads; 1 and the loader's error otherwise.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	var profiles list
	envFile := flag.String("env-file", "", "file of KEY=VALUE lines for ${...} (default: .env next to the compose file)")
	print := flag.Bool("print", false, "print the resolved model as YAML")
	flag.Var(&profiles, "profile", "profile to enable (repeatable)")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: compose-config [-env-file FILE] [-profile NAME]... [-print] COMPOSE_FILE")
		os.Exit(2)
	}
	file := flag.Arg(0)
	opts, err := cli.NewProjectOptions(
		[]string{file},
		cli.WithEnvFile(*envFile),
		cli.WithDotEnv,
		cli.WithProfiles(profiles),
	)
	if err == nil {
		p, loadErr := opts.LoadProject(context.Background())
		if loadErr == nil {
			names := p.ServiceNames()
			sort.Strings(names)
			if *print {
				out, marshalErr := p.MarshalYAML()
				if marshalErr != nil {
					fmt.Fprintln(os.Stderr, marshalErr)
					os.Exit(1)
				}
				os.Stdout.Write(out)
			}
			fmt.Fprintf(os.Stderr, "%s: OK, project %q, profiles %v, %d services: %s\n",
				file, p.Name, []string(profiles), len(names), strings.Join(names, " "))
			return
		}
		err = loadErr
	}
	fmt.Fprintf(os.Stderr, "%s: %v\n", file, err)
	os.Exit(1)
}
