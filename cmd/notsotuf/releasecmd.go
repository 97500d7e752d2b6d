package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/notsotuf/notsotuf"
)

// Release management: yank, unyank, rollout (and the flags add and
// remove share with them).

func init() {
	register(command{"yank", "VERSION [--reason TEXT] [--platform NAME]", "withdraw a release without deleting it (clients on it roll back)", cmdYank})
	register(command{"unyank", "VERSION [--platform NAME]", "publish a yanked release again", cmdUnyank})
	register(command{"rollout", "VERSION PERCENT [--platform NAME]", "offer a release to PERCENT of installs (0 halts, 100 completes)", cmdRollout})
}

// parsePercent reads a rollout percentage: an integer from 0 to 100,
// optionally followed by '%'.
func parsePercent(flagName, s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(s), "%"))
	if err != nil || n < 0 || n > 100 {
		return 0, usagef("%s %q: want a percentage from 0 to 100", flagName, s)
	}
	return n, nil
}

func platformFlag(fs interface {
	StringVar(*string, string, string, string)
}, what string) *string {
	p := new(string)
	fs.StringVar(p, "platform", "", what)
	return p
}

// printChange prints what a release change did.
func printChange(w io.Writer, verb string, res *notsotuf.ChangeResult) {
	for _, name := range res.Releases {
		fmt.Fprintf(w, "%s %s\n", verb, name)
	}
	printRepatched(w, res.Repatched)
	if res.Signatures < res.Threshold {
		fmt.Fprintf(w, "targets has %d of %d signatures: clients see the change once `notsotuf sign targets` is run where the other keys are\n", res.Signatures, res.Threshold)
	}
}

func printRepatched(w io.Writer, rs []notsotuf.Repatch) {
	for _, p := range rs {
		if p.From == "" {
			fmt.Fprintf(w, "  patch   %s dropped (no older release to patch from)\n", p.Name)
		} else {
			fmt.Fprintf(w, "  patch   %s rebuilt, from %s\n", p.Name, p.From)
		}
	}
}

func cmdYank(env *cliEnv, args []string) error {
	fs := newFlags(env, "yank", "VERSION [--reason TEXT] [--platform NAME]")
	cfgPath := configFlag(fs)
	reason := fs.String("reason", "", "`TEXT` saying why, in a few words: clients show it (signed with the release)")
	platform := platformFlag(fs, "yank the build of platform `NAME` only (default: every build of VERSION)")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("yank needs VERSION")
	}
	repo, err := openRepo(env, *cfgPath)
	if err != nil {
		return err
	}
	res, err := repo.Yank(env.ctx, pos[0], *platform, *reason)
	if err != nil {
		return err
	}
	printChange(env.stdout, "yanked", res)
	fmt.Fprintln(env.stdout, "clients no longer install it; those running it go back to the newest release that is not yanked")
	return nil
}

func cmdUnyank(env *cliEnv, args []string) error {
	fs := newFlags(env, "unyank", "VERSION [--platform NAME]")
	cfgPath := configFlag(fs)
	platform := platformFlag(fs, "unyank the build of platform `NAME` only (default: every yanked build of VERSION)")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("unyank needs VERSION")
	}
	repo, err := openRepo(env, *cfgPath)
	if err != nil {
		return err
	}
	res, err := repo.Unyank(env.ctx, pos[0], *platform)
	if err != nil {
		return err
	}
	printChange(env.stdout, "unyanked", res)
	return nil
}

func cmdRollout(env *cliEnv, args []string) error {
	fs := newFlags(env, "rollout", "VERSION PERCENT [--platform NAME]")
	cfgPath := configFlag(fs)
	platform := platformFlag(fs, "change the build of platform `NAME` only (default: every build of VERSION)")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usagef("rollout needs VERSION and PERCENT")
	}
	percent, err := parsePercent("PERCENT", pos[1])
	if err != nil {
		return err
	}
	repo, err := openRepo(env, *cfgPath)
	if err != nil {
		return err
	}
	res, err := repo.SetRollout(env.ctx, pos[0], *platform, percent)
	if err != nil {
		return err
	}
	verb := fmt.Sprintf("rollout %d%%:", percent)
	switch percent {
	case 0:
		verb = "rollout halted:"
	case 100:
		verb = "rollout complete:"
	}
	printChange(env.stdout, verb, res)
	return nil
}
