package main

import (
	"context"
	"errors"
	"io"
)

// snippetCmd is not built yet; the file belongs to the issue that builds it.
func snippetCmd(_ context.Context, _ []string, _, _ io.Writer) error {
	return errors.New("not implemented yet")
}
