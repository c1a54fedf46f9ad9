package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// binary is cmd/paypage, built once per test run by the first test that
// needs it, and removed when the run ends.
var binary struct {
	once      sync.Once
	dir, path string
	err       error
	out       []byte
}

func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		code = checkedEverything()
	}
	if binary.dir != "" {
		os.RemoveAll(binary.dir)
	}
	os.Exit(code)
}

// buildBinary returns the path of the real paypage binary.
func buildBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("runs real paypage processes: skipped with -short")
	}
	binary.once.Do(func() {
		if binary.dir, binary.err = os.MkdirTemp("", "paypage-e2e"); binary.err != nil {
			return
		}
		binary.path = filepath.Join(binary.dir, "paypage")
		binary.out, binary.err = exec.Command("go", "build", "-o", binary.path, "../../cmd/paypage").CombinedOutput()
	})
	if binary.err != nil {
		t.Fatalf("go build: %v\n%s", binary.err, binary.out)
	}
	return binary.path
}
