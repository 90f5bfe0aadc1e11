package redisstock

import (
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// packed joins the values of a packed event.
func packed(v ...string) map[string]any { return map[string]any{"p": strings.Join(v, packedSep)} }

// TestParseEventReadsBothFormats: an event packed into one field parses as
// the same event written one field per value, as the streams of the store
// before it packed events hold them, so that those streams drain.
func TestParseEventReadsBothFormats(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		packed map[string]any
		old    map[string]any
	}{
		{"reserve", packed("e1", "7", "rv", "r1", "2", "1", "1700000000000001", "1690000000000002", "", "", "1", "a", "2", "8", "3"),
			map[string]any{"sq": "7", "t": "rv", "id": "r1", "at": "2", "st": "1", "exp": "1700000000000001", "cr": "1690000000000002", "n": "1", "s1": "a", "q1": "2", "a1": "8", "v1": "3"}},
		{"record", packed("e1", "4294967303", "rs", "r2", "", "2", "1700000000000001", "1690000000000002", "5,9", "", "2", "a", "1", "b é", "4"),
			map[string]any{"sq": "4294967303", "t": "rs", "id": "r2", "st": "2", "exp": "1700000000000001", "cr": "1690000000000002", "vs": "5,9", "n": "2", "s1": "a", "q1": "1", "s2": "b é", "q2": "4"}},
		{"tombstone", packed("e1", "9", "rs", "r3", "", "3", "1", "1", "", "", "0"),
			map[string]any{"sq": "9", "t": "rs", "id": "r3", "st": "3", "exp": "1", "cr": "1", "n": "0"}},
		{"stock", packed("e1", "10", "st", "", "", "", "", "", "", "3", "1", "a", "0", "9007199254740992", "12"),
			map[string]any{"sq": "10", "t": "st", "b": "3", "n": "1", "s1": "a", "q1": "0", "a1": "9007199254740992", "v1": "12"}},
		{"give", packed("e1", "11", "gv", "r1", "2", "", "", "", "", "", "1", "a", "2", "10", "4"),
			map[string]any{"sq": "11", "t": "gv", "id": "r1", "at": "2", "n": "1", "s1": "a", "q1": "2", "a1": "10", "v1": "4"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := parseEvent(redis.XMessage{ID: "5-1", Values: tc.packed})
			require.NoError(t, err)
			o, err := parseEvent(redis.XMessage{ID: "5-1", Values: tc.old})
			require.NoError(t, err)
			assert.Equal(t, o, p)
			assert.NotEmpty(t, p.kind)
		})
	}
	for _, bad := range []map[string]any{
		packed("e1", "7", "rv", "r1", "2", "1", "1", "1", "", "", "1", "a", "2", "8"), // a value short
		packed("e2", "7", "rv", "r1", "2", "1", "1", "1", "", "", "0"),                // another format
		packed("e1", "7", "zz", "r1", "2", "1", "1", "1", "", "", "1", "a", "2", "8", "3"),
		{"p": 5},
	} {
		_, err := parseEvent(redis.XMessage{ID: "5-1", Values: bad})
		assert.Error(t, err, "%v", bad)
	}
}
