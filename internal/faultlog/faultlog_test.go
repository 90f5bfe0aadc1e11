package faultlog

import "testing"

func TestParseReadsWhatLogWrites(t *testing.T) {
	c := Cell{Strategy: "sqlcond", Fault: ConnCut, Tried: 48, Oversold: 1, Lost: 2, Double: 3}
	line := "    x_test.go:12: " + prefix + " strategy=sqlcond fault=connection-cut tried=48 oversold=1 lost=2 double=3 test=TestX/Y\n"
	got, ok := Parse(line)
	c.Test = "TestX/Y"
	if !ok || got != c {
		t.Fatalf("Parse(%q) = %+v, %v; want %+v", line, got, ok, c)
	}
	if _, ok := Parse("strategy=sqlcond fault=connection-cut"); ok {
		t.Fatal("a line without the prefix parsed")
	}
	if got := StrategyName(&c); got != "faultlog" {
		t.Fatalf("StrategyName = %q", got)
	}
}
