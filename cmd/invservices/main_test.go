package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestExportsNameTheVariablesTheTestsAndTheBenchmarkRead(t *testing.T) {
	got := exports(map[string]string{"REDIS": "redis://127.0.0.1:32768", "POSTGRES": "postgres://postgres:postgres@127.0.0.1:32769/test?sslmode=disable", "MYSQL": "root@tcp(127.0.0.1:32770)/test"})
	assert.Equal(t, `export INVENTORY_TEST_POSTGRES_URL="postgres://postgres:postgres@127.0.0.1:32769/test?sslmode=disable"
export INVENTORY_POSTGRES_URL="postgres://postgres:postgres@127.0.0.1:32769/test?sslmode=disable"
export INVENTORY_TEST_REDIS_URL="redis://127.0.0.1:32768"
export INVENTORY_REDIS_URL="redis://127.0.0.1:32768"
export INVENTORY_TEST_MYSQL_URL="root@tcp(127.0.0.1:32770)/test"
export INVENTORY_MYSQL_URL="root@tcp(127.0.0.1:32770)/test"
`, got)
}
