package strategy_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/ledger"
	"github.com/oversell/inventory/redislock"
	"github.com/oversell/inventory/redisstock"
	invtoken "github.com/oversell/inventory/token"
)

// typedErrors holds, for every error type declared in the module (a type
// with an Error() string method, outside tests), values of it as its package
// returns them. TestErrorTextNamesItsKind finds the types in the source, so
// a new one fails the test until it is listed here.
var typedErrors = map[string][]error{
	"inventory.InsufficientStockError": {&inventory.InsufficientStockError{SKU: "a", Requested: 2, Available: 1}},
	"inventory.UnknownSKUError":        {&inventory.UnknownSKUError{SKU: "a"}},
	"inventory.StateError": {
		&inventory.StateError{ID: "r", Op: "commit", State: inventory.Expired},
		&inventory.StateError{ID: "r", Op: "release", State: inventory.Committed},
	},
	"inventory.LimitError": {
		&inventory.LimitError{SKU: "a", Buyer: "b", Limit: 2, Had: 2},
		&inventory.LimitError{SKU: "a", Limit: 2},
	},
	"inventory.ValidationError":     {&inventory.ValidationError{Field: "ID", Reason: "empty"}},
	"inventory.OutcomeUnknownError": {&inventory.OutcomeUnknownError{Op: "reserve", ID: "r", Err: io.ErrUnexpectedEOF}},
	"inventory.UnavailableError":    {&inventory.UnavailableError{Op: "reserve", Server: "postgres", Err: syscall.ECONNREFUSED}},
	"internal/ledger.RefusedError":  {&ledger.RefusedError{Line: inventory.Line{SKU: "a", Qty: 1}}},
	"redislock.FencedError":         {&redislock.FencedError{SKU: "a", Fence: 3, Seen: 4}},
	"redislock.ContendedError":      {&redislock.ContendedError{SKU: "a", Waited: 5 * time.Second}},
	"redisstock.NotLoadedError":     {&redisstock.NotLoadedError{Key: "inv:{a}:loaded"}},
	"token.sentinel":                {invtoken.ErrInvalidToken, invtoken.ErrExpiredToken, invtoken.ErrInProgress},
}

// unreachableErrors are the error types no caller ever sees, and why.
var unreachableErrors = map[string]string{
	"internal/pgstore.aborted": "the store unwraps it to the error it carries before returning",
	"redisstock.notSentError":  "the strategy returns the context's error it carries instead",
}

// TestErrorTextNamesItsKind checks that the message of every typed error
// of the module contains the text of every error it unwraps to: a log line
// or a grep for "inventory: contended" finds every contended error,
// whatever type carries it.
func TestErrorTextNamesItsKind(t *testing.T) {
	declared := declaredErrorTypes(t, "..")
	require.NotEmpty(t, declared)
	for _, name := range declared {
		if _, ok := unreachableErrors[name]; ok {
			continue
		}
		if _, ok := typedErrors[name]; !ok {
			t.Errorf("error type %s is not in typedErrors: add values of it, as its package returns them, so that its text is checked", name)
		}
	}
	for name := range typedErrors {
		assert.Contains(t, declared, name, "typedErrors lists %s, which the source no longer declares", name)
	}
	for name, errs := range typedErrors {
		for _, err := range errs {
			msg := err.Error()
			for _, inner := range unwrapTree(err) {
				assert.Contains(t, msg, inner.Error(), "%s %q hides the text of %q, which it unwraps to", name, msg, inner.Error())
			}
		}
	}
}

// TestErrorTextCheckCatchesAHiddenKind shows the check above failing on an
// error whose text leaves out its sentinel's.
func TestErrorTextCheckCatchesAHiddenKind(t *testing.T) {
	hidden := hiddenKind{}
	var missed []string
	for _, inner := range unwrapTree(hidden) {
		if !strings.Contains(hidden.Error(), inner.Error()) {
			missed = append(missed, inner.Error())
		}
	}
	assert.Equal(t, []string{inventory.ErrContended.Error()}, missed)
}

type hiddenKind struct{}

func (hiddenKind) Error() string { return "lock still held by another owner" }
func (hiddenKind) Unwrap() error { return inventory.ErrContended }

// unwrapTree returns every error err unwraps to, directly or not.
func unwrapTree(err error) []error {
	var out []error
	var walk func(error)
	walk = func(e error) {
		var next []error
		switch u := e.(type) {
		case interface{ Unwrap() error }:
			next = []error{u.Unwrap()}
		case interface{ Unwrap() []error }:
			next = u.Unwrap()
		}
		for _, n := range next {
			if n != nil {
				out = append(out, n)
				walk(n)
			}
		}
	}
	walk(err)
	return out
}

// declaredErrorTypes returns the types with an Error() string method
// declared in the non-test files of the module rooted at root, as
// "dir.Type" with the root package as "inventory". Nested modules (with a
// go.mod of their own) are left out.
func declaredErrorTypes(t *testing.T, root string) []string {
	t.Helper()
	var names []string
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			base := d.Name()
			if path != root && (strings.HasPrefix(base, ".") || base == "testdata") {
				return filepath.SkipDir
			}
			if path != root {
				if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil {
					return filepath.SkipDir
				}
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, filepath.Dir(path))
		if err != nil {
			return err
		}
		pkg := filepath.ToSlash(rel)
		if pkg == "." {
			pkg = "inventory"
		}
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Recv == nil || fn.Name.Name != "Error" || fn.Type.Params.NumFields() != 0 || fn.Type.Results.NumFields() != 1 {
				continue
			}
			if res, ok := fn.Type.Results.List[0].Type.(*ast.Ident); !ok || res.Name != "string" {
				continue
			}
			recv := fn.Recv.List[0].Type
			if star, ok := recv.(*ast.StarExpr); ok {
				recv = star.X
			}
			if id, ok := recv.(*ast.Ident); ok {
				names = append(names, pkg+"."+id.Name)
			}
		}
		return nil
	})
	require.NoError(t, err)
	slices.Sort(names)
	return names
}
