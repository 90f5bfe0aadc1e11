package testsvc

import (
	"context"
	"database/sql"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// MySQL's variable and default: a go-sql-driver/mysql DSN.
const (
	MySQLEnv        = "INVENTORY_TEST_MYSQL_URL"
	DefaultMySQLURL = "root@tcp(127.0.0.1:3306)/test"
)

var (
	myOnce sync.Once
	myDB   *sql.DB
	myURL  string
	myErr  error
)

// MySQLURL returns the DSN of a MySQL or MariaDB server that answers, or
// skips (or fails) the test.
func MySQLURL(t testing.TB) string {
	t.Helper()
	MySQL(t)
	return myURL
}

// MySQL returns a pool shared by every test in the binary, or skips (or
// fails) the test. Tests isolate themselves with MySQLDatabase.
func MySQL(t testing.TB) *sql.DB {
	t.Helper()
	myOnce.Do(func() {
		myURL = os.Getenv(MySQLEnv)
		if myURL == "" {
			myURL = DefaultMySQLURL
		}
		myDB, myErr = OpenMySQL(myURL, MaxConns)
	})
	if myErr != nil {
		Unavailable(t, MySQLEnv, myErr)
	}
	return myDB
}

// OpenMySQL opens a pool of at most conns connections on dsn and checks
// that the server answers.
func OpenMySQL(dsn string, conns int) (*sql.DB, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second // a loaded server may leave a connect queued for seconds
	}
	c, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(c)
	db.SetMaxOpenConns(conns)
	db.SetMaxIdleConns(conns)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return nil, err
	}
	return db, nil
}

// MySQLDatabase returns the name of a database (MySQL's schema) for this test
// alone, not yet created (the strategy's Migrate creates it), dropped with
// everything in it when the test ends.
func MySQLDatabase(t testing.TB) string {
	t.Helper()
	db := MySQL(t)
	name := "invtest_" + randomHex(8)
	t.Cleanup(func() {
		if _, err := db.ExecContext(context.Background(), "DROP DATABASE IF EXISTS `"+name+"`"); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	return name
}
