package main

import (
	"context"
	"errors"
	"io"
)

// benchCmd is not built yet; the file belongs to the issue that builds it.
func benchCmd(_ context.Context, _ []string, _, _ io.Writer) error {
	return errors.New("not implemented yet")
}
