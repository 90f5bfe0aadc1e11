package testsvc

import "testing"

func TestSoakReadsTheVariable(t *testing.T) {
	for _, c := range []struct {
		value string
		want  bool
	}{{"", false}, {"0", false}, {"true", false}, {"1", true}} {
		t.Setenv(SoakEnv, c.value)
		if got := Soak(); got != c.want {
			t.Errorf("%s=%q: Soak() = %v, want %v", SoakEnv, c.value, got, c.want)
		}
	}
}
