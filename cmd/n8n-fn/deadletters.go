package main

import (
	"context"
	"errors"
	"io"
)

// deadLettersCmd is not built yet; the file belongs to the issue that builds it.
func deadLettersCmd(_ context.Context, _ []string, _, _ io.Writer) error {
	return errors.New("not implemented yet")
}
