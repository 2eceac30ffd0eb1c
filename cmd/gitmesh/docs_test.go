package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// TestDocumentedFlagsExist reads every `gitmesh <command> --flag` in the
// README and docs/ (code blocks and inline code) and checks that the
// command has that flag, so the docs cannot drift from the real flags.
func TestDocumentedFlagsExist(t *testing.T) {
	files, err := filepath.Glob("../../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "../../README.md")
	root := newRootCmd()
	checked := 0
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range codeLines(string(b)) {
			for _, use := range flagUses(root, line) {
				checked++
				if !slices.ContainsFunc(use.cmds, func(c *cobra.Command) bool { return hasFlag(c, use.flag) }) {
					t.Errorf("%s: `%s` has no flag %s (in: %s)", filepath.Base(file), use.cmds[0].CommandPath(), use.flag, strings.TrimSpace(line))
				}
			}
		}
	}
	t.Logf("checked %d documented flags", checked)
	if checked < 50 {
		t.Errorf("checked %d documented flags; want the docs' many (is the parser broken?)", checked)
	}
}

var inlineCode = regexp.MustCompile("`([^`]+)`")

// codeLines returns the lines of md's fenced code blocks (continuation
// lines ending in \ joined) and its inline code spans.
func codeLines(md string) []string {
	var out []string
	in := false
	cont := ""
	for _, line := range strings.Split(md, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			in = !in
			continue
		}
		if !in {
			for _, m := range inlineCode.FindAllStringSubmatch(line, -1) {
				out = append(out, m[1])
			}
			continue
		}
		if s, ok := strings.CutSuffix(line, `\`); ok {
			cont += s + " "
			continue
		}
		out = append(out, cont+line)
		cont = ""
	}
	return out
}

// flagUse is a flag given to a command, or to one of alternatives
// written together ("gitmesh ca status|rotate|prune [--force]").
type flagUse struct {
	cmds []*cobra.Command
	flag string
}

// flagUses finds gitmesh invocations in line and the flags given to them.
func flagUses(root *cobra.Command, line string) []flagUse {
	if i := strings.Index(line, " #"); i >= 0 {
		line = line[:i] // a shell comment
	}
	line = strings.ReplaceAll(line, `\|`, "|")
	toks := strings.FieldsFunc(line, func(r rune) bool {
		return r == ' ' || r == '\t' || r == '[' || r == ']' || r == '|' || r == '(' || r == ')'
	})
	var out []flagUse
	for i := 0; i < len(toks); i++ {
		if toks[i] != "gitmesh" && !strings.HasSuffix(toks[i], "/gitmesh") {
			continue
		}
		if i > 0 && (toks[i-1] == "install" || toks[i-1] == "upgrade" || toks[i-1] == "template" || toks[i-1] == "uninstall") {
			continue // a Helm release named gitmesh
		}
		cmd := root
		j := i + 1
		for ; j < len(toks); j++ {
			sub, _, err := cmd.Find([]string{toks[j]})
			if err != nil || sub == cmd {
				break
			}
			cmd = sub
		}
		if cmd == root && (j == len(toks) || !strings.HasPrefix(toks[j], "--v")) {
			continue // prose ("gitmesh compiles it ...") or a chart name
		}
		alts := []*cobra.Command{cmd}
		for ; j < len(toks) && cmd.HasParent(); j++ {
			sib, _, err := cmd.Parent().Find([]string{toks[j]})
			if err != nil || sib == cmd.Parent() {
				break
			}
			alts = append(alts, sib)
		}
		for ; j < len(toks); j++ {
			tok := toks[j]
			if tok == "&&" || tok == ";" || tok == ">" || tok == "#" || tok == "gitmesh" || strings.HasSuffix(tok, "/gitmesh") {
				j--
				break
			}
			if !strings.HasPrefix(tok, "-") || tok == "-" || tok == "--" || strings.HasPrefix(tok, "-$") {
				continue
			}
			name, _, _ := strings.Cut(tok, "=")
			name = strings.TrimRight(name, ",.:;'\"")
			if name == "-h" || name == "--help" {
				continue
			}
			out = append(out, flagUse{alts, name})
		}
		i = j
	}
	return out
}

// hasFlag reports whether cmd accepts flag ("--name" or "-x"), as its own,
// inherited or normalized (--format for --output) flag.
func hasFlag(cmd *cobra.Command, flag string) bool {
	fs := cmd.Flags()
	fs.AddFlagSet(cmd.InheritedFlags())
	if name, ok := strings.CutPrefix(flag, "--"); ok {
		return fs.Lookup(name) != nil || fs.Lookup(string(normalize(fs, name))) != nil || (cmd.Root() == cmd && name == "version")
	}
	short := strings.TrimPrefix(flag, "-")
	return len(short) == 1 && fs.ShorthandLookup(short) != nil
}

func normalize(fs *pflag.FlagSet, name string) pflag.NormalizedName {
	if f := fs.GetNormalizeFunc(); f != nil {
		return f(fs, name)
	}
	return pflag.NormalizedName(name)
}

var flagMention = regexp.MustCompile(`(?:^|[\s'(\[|,])(--[a-z][a-z0-9-]*|-[a-zA-Z])\b`)

// TestHelpMentionsRealFlags checks every flag a command's usage line,
// long help or examples mention against the command's real flags (or,
// on a line that runs another gitmesh command, that command's; a flag of
// another command named in prose, e.g. the controller's, must exist
// there).
func TestHelpMentionsRealFlags(t *testing.T) {
	root := newRootCmd()
	var all []*cobra.Command
	var collect func(c *cobra.Command)
	collect = func(c *cobra.Command) {
		all = append(all, c)
		for _, sub := range c.Commands() {
			collect(sub)
		}
	}
	collect(root)
	checked := 0
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, text := range []string{c.Use, c.Long, c.Example} {
			for _, line := range strings.Split(text, "\n") {
				if strings.Contains(line, "gitmesh ") {
					for _, use := range flagUses(root, line) {
						checked++
						if !slices.ContainsFunc(use.cmds, func(c *cobra.Command) bool { return hasFlag(c, use.flag) }) {
							t.Errorf("help of %q: %s has no flag %s (in: %s)", c.CommandPath(), use.cmds[0].CommandPath(), use.flag, strings.TrimSpace(line))
						}
					}
					continue
				}
				if strings.HasPrefix(strings.TrimSpace(line), "curl ") {
					continue
				}
				for _, m := range flagMention.FindAllStringSubmatch(line, -1) {
					checked++
					if !hasFlag(c, m[1]) && !slices.ContainsFunc(all, func(o *cobra.Command) bool { return hasFlag(o, m[1]) }) {
						t.Errorf("help of %q mentions %s, which it does not have (in: %s)", c.CommandPath(), m[1], strings.TrimSpace(line))
					}
				}
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	t.Logf("checked %d flags mentioned in help", checked)
}

func TestFlagUses(t *testing.T) {
	root := newRootCmd()
	tests := []struct {
		line string
		want []string // "command path flag", ok or not
	}{
		{"gitmesh status --watch -o json", []string{"gitmesh status --watch ok", "gitmesh status -o ok"}},
		{"gitmesh history --limit 5 --nope", []string{"gitmesh history --limit ok", "gitmesh history --nope missing"}},
		{"gitmesh validate policy --format github", []string{"gitmesh validate --format ok"}},
		{"helm install gitmesh -n gitmesh-system", nil},
		{"gitmesh compiles it as --whatever", nil},
		{`gitmesh ca status\|rotate\|prune [--force]`, []string{"gitmesh ca status --force ok"}},
		{"gitmesh rollback --to 4 && gitmesh resume --full", []string{"gitmesh rollback --to ok", "gitmesh resume --full missing"}},
	}
	for _, tc := range tests {
		t.Run(tc.line, func(t *testing.T) {
			var got []string
			for _, u := range flagUses(root, tc.line) {
				ok := "missing"
				if slices.ContainsFunc(u.cmds, func(c *cobra.Command) bool { return hasFlag(c, u.flag) }) {
					ok = "ok"
				}
				got = append(got, u.cmds[0].CommandPath()+" "+u.flag+" "+ok)
			}
			if strings.Join(got, "; ") != strings.Join(tc.want, "; ") {
				t.Errorf("got %q; want %q", got, tc.want)
			}
		})
	}
}
