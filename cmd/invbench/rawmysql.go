package main

import (
	"context"
	"database/sql"
	"errors"
	"strings"

	"github.com/oversell/inventory"
)

// rawMySQL issues the bare statements through go-sql-driver/mysql, each
// prepared once so that a statement is one round trip, in autocommit:
//
//   - raw-mysql: one autocommit conditional UPDATE per line
//     (UPDATE stock SET available = available - ? WHERE sku = ? AND
//     available >= ?), in sorted SKU order; a refused line gives back the
//     lines taken before it. Release is one autocommit UPDATE per line.
type rawMySQL struct {
	takeSt, giveSt, availSt, setSt, addSt *sql.Stmt
}

func quoteMySQL(name string) string { return "`" + strings.ReplaceAll(name, "`", "``") + "`" }

// openRawMySQL creates the database schema with a stock table and returns
// the baseline on it.
func openRawMySQL(ctx context.Context, db *sql.DB, schema string) (*raw, error) {
	t := quoteMySQL(schema) + ".stock"
	for _, q := range []string{
		"CREATE DATABASE IF NOT EXISTS " + quoteMySQL(schema),
		"CREATE TABLE IF NOT EXISTS " + t + " (sku VARBINARY(128) PRIMARY KEY, available BIGINT NOT NULL, CHECK (available >= 0)) ENGINE=InnoDB",
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return nil, err
		}
	}
	ops := &rawMySQL{}
	for _, p := range []struct {
		st **sql.Stmt
		q  string
	}{
		{&ops.takeSt, "UPDATE " + t + " SET available = available - ? WHERE sku = ? AND available >= ?"},
		{&ops.giveSt, "UPDATE " + t + " SET available = available + ? WHERE sku = ?"},
		{&ops.availSt, "SELECT available FROM " + t + " WHERE sku = ?"},
		{&ops.setSt, "INSERT INTO " + t + " (sku, available) VALUES (?, ?) ON DUPLICATE KEY UPDATE available = VALUES(available)"},
		{&ops.addSt, "UPDATE " + t + " SET available = available + ? WHERE sku = ? AND available + ? >= 0"},
	} {
		st, err := db.PrepareContext(ctx, p.q)
		if err != nil {
			ops.close()
			return nil, err
		}
		*p.st = st
	}
	return &raw{ops: ops, ledger: newLedger()}, nil
}

func (m *rawMySQL) close() {
	for _, st := range []*sql.Stmt{m.takeSt, m.giveSt, m.availSt, m.setSt, m.addSt} {
		if st != nil {
			_ = st.Close()
		}
	}
}

func (m *rawMySQL) take(ctx context.Context, lines []inventory.Line) error {
	for i, l := range lines {
		r, err := m.takeSt.ExecContext(ctx, l.Qty, []byte(l.SKU), l.Qty)
		var n int64
		if err == nil {
			n, err = r.RowsAffected()
		}
		if err == nil && n == 1 {
			continue
		}
		if gerr := m.give(context.WithoutCancel(ctx), lines[:i]); gerr != nil {
			err = errors.Join(err, gerr)
		}
		if err != nil {
			return err
		}
		return &inventory.InsufficientStockError{SKU: l.SKU, Requested: l.Qty}
	}
	return nil
}

func (m *rawMySQL) give(ctx context.Context, lines []inventory.Line) error {
	for _, l := range lines {
		if _, err := m.giveSt.ExecContext(ctx, l.Qty, []byte(l.SKU)); err != nil {
			return err
		}
	}
	return nil
}

func (m *rawMySQL) available(ctx context.Context, sku string) (int64, error) {
	var n int64
	err := m.availSt.QueryRowContext(ctx, []byte(sku)).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, &inventory.UnknownSKUError{SKU: sku}
	}
	return n, err
}

func (m *rawMySQL) setStock(ctx context.Context, sku string, n int64) error {
	_, err := m.setSt.ExecContext(ctx, []byte(sku), n)
	return err
}

func (m *rawMySQL) addStock(ctx context.Context, sku string, delta int64) (int64, error) {
	r, err := m.addSt.ExecContext(ctx, delta, []byte(sku), delta)
	if err != nil {
		return 0, err
	}
	if n, _ := r.RowsAffected(); n == 0 && delta != 0 {
		if _, aerr := m.available(ctx, sku); aerr != nil {
			return 0, aerr
		}
		return 0, &inventory.InsufficientStockError{SKU: sku, Requested: -delta}
	}
	return m.available(ctx, sku)
}
