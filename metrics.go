package inventory

// MetricKind says how the value of a Metric behaves over time.
type MetricKind int

// The kinds of Metric.
const (
	// Counter is a cumulative total since the strategy was made; it never
	// decreases (flushes, dead letters, retries).
	Counter MetricKind = iota + 1
	// Gauge is a value at the moment of reading (queue depth, stream lag).
	Gauge
	// Histogram is not a kind a strategy reports: distributions (batch
	// sizes, durations) are reported as a Counter of observations and a
	// Counter of their sum, named "<name>.count" and "<name>.sum".
)

// Metric is one internal signal of a strategy, read at one moment: the
// things only the strategy knows, such as the size of its batches or the lag
// of its write-behind stream. It is plain data, so that strategies depend on
// no telemetry library; an instrumentation wrapper turns each Metric into an
// instrument of its own (otelinventory).
type Metric struct {
	// Name is dot-separated, lower case, without the strategy's name or the
	// "inventory." prefix, which the reader adds: "batch.size.count",
	// "queue.depth", "writer.lag".
	Name string
	// Unit follows the UCUM codes of the OpenTelemetry semantic conventions:
	// "s", "By", "1" for counts, or "{batch}" style annotations.
	Unit string
	// Description is one sentence for the instrument's description.
	Description string
	// Kind is Counter or Gauge.
	Kind MetricKind
	// Value is the reading.
	Value float64
}

// MetricsReporter is implemented by strategies that have internal signals
// worth exporting. Metrics returns a snapshot of every signal, in a stable
// order, and must be cheap and safe to call from any goroutine at any time:
// a metrics exporter calls it on every collection, never on a hot path.
type MetricsReporter interface {
	Metrics() []Metric
}
