package soak

import "testing"

func TestOnAndPickReadTheVariable(t *testing.T) {
	for _, c := range []struct {
		value string
		want  bool
	}{{"", false}, {"0", false}, {"true", false}, {"1", true}} {
		t.Setenv(Env, c.value)
		if got := On(); got != c.want {
			t.Errorf("%s=%q: On() = %v, want %v", Env, c.value, got, c.want)
		}
		want := 10
		if c.want {
			want = 400
		}
		if got := Pick(10, 400); got != want {
			t.Errorf("%s=%q: Pick(10, 400) = %d, want %d", Env, c.value, got, want)
		}
	}
}
