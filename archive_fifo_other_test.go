//go:build !unix

package notsotuf

import "errors"

func mkfifoForTest(string) error { return errors.New("no named pipes here") }
