package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"time"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/token"
)

// buyerHeader names the buyer of a request, for the SKUs that sell a
// limited number of units per buyer. The authenticating proxy in front of
// the service sets it from the buyer's session and strips it from what
// clients send; a shop without such a proxy derives the buyer from its own
// session instead. A client that could choose it could get round the limit.
const buyerHeader = "X-Buyer"

// maxBodyBytes bounds a request body. A cart of inventory.MaxLines lines with
// SKUs of inventory.MaxSKULen bytes fits in well under half of it.
const maxBodyBytes = 64 << 10

// serverOptions configures the handler newServer makes. A nil *serverOptions
// takes every default.
type serverOptions struct {
	// MaxTTL is the longest hold a client may ask for. Default: 1h.
	MaxTTL time.Duration
	// Timeout bounds the work of each request on the strategy. Default: 10s.
	Timeout time.Duration
	// Logger receives the errors answered with 500. Default: slog.Default().
	Logger *slog.Logger
}

// server answers the checkout API on a strategy.
type server struct {
	inv     inventory.Strategy
	newID   func(ctx context.Context) (string, error)
	maxTTL  time.Duration
	timeout time.Duration
	log     *slog.Logger
}

// newServer returns the handler of the checkout API on inv. newID issues the
// tokens GET /checkout hands out; POST /reservations uses them as reservation
// IDs, so inv should accept only those (a token.Reserver does).
//
//	GET    /checkout                   a token for one checkout attempt
//	POST   /reservations               hold a cart: {"token", "lines": [{"sku", "qty", "min"}], "ttl", "partial"}
//	GET    /reservations/{id}          the reservation as stored
//	POST   /reservations/{id}/extend   keep the hold longer: {"ttl"}
//	POST   /reservations/{id}/commit   the payment went through: the units are sold
//	DELETE /reservations/{id}          the buyer gave up: the units go back
//	GET    /stock/{sku}                units still available
//	GET    /stock/{sku}/levels         units available, held, sold and backordered
//
// POST /reservations names the buyer from the X-Buyer header (see
// buyerHeader).
func newServer(inv inventory.Strategy, newID func(ctx context.Context) (string, error), opts *serverOptions) http.Handler {
	s := &server{inv: inv, newID: newID, maxTTL: time.Hour, timeout: 10 * time.Second, log: slog.Default()}
	if opts != nil {
		if opts.MaxTTL > 0 {
			s.maxTTL = opts.MaxTTL
		}
		if opts.Timeout > 0 {
			s.timeout = opts.Timeout
		}
		if opts.Logger != nil {
			s.log = opts.Logger
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /checkout", s.checkout)
	mux.HandleFunc("POST /reservations", s.reserve)
	mux.HandleFunc("GET /reservations/{id}", s.lookup)
	mux.HandleFunc("POST /reservations/{id}/extend", s.extend)
	mux.HandleFunc("POST /reservations/{id}/commit", s.commit)
	mux.HandleFunc("DELETE /reservations/{id}", s.release)
	mux.HandleFunc("GET /stock/{sku}", s.stock)
	mux.HandleFunc("GET /stock/{sku}/levels", s.levels)
	return jsonFallback(mux)
}

// jsonFallback serves mux, answering the requests none of its patterns
// match in JSON as every other error: 404 for a path it does not serve, 405
// with Allow for a method the path does not take.
func jsonFallback(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern != "" {
			mux.ServeHTTP(w, r) // sets the path values the handlers read
			return
		}
		// The mux's own answer, for its status and Allow header alone.
		got := &statusRecorder{header: make(http.Header)}
		h.ServeHTTP(got, r)
		switch got.status {
		case http.StatusNotFound:
			writeJSON(w, http.StatusNotFound, errorJSON{Error: "no_route", Message: "no endpoint has this path"})
		case http.StatusMethodNotAllowed:
			allow := got.header.Get("Allow")
			w.Header().Set("Allow", allow)
			writeJSON(w, http.StatusMethodNotAllowed, errorJSON{Error: "method_not_allowed",
				Message: fmt.Sprintf("this path takes %s, not %s", allow, r.Method)})
		default:
			mux.ServeHTTP(w, r)
		}
	})
}

// statusRecorder keeps the status and headers written to it and drops the
// body.
type statusRecorder struct {
	header http.Header
	status int
}

func (s *statusRecorder) Header() http.Header { return s.header }

func (s *statusRecorder) WriteHeader(status int) {
	if s.status == 0 {
		s.status = status
	}
}

func (s *statusRecorder) Write(p []byte) (int, error) {
	s.WriteHeader(http.StatusOK)
	return len(p), nil
}

// The JSON of the API.
type (
	lineJSON struct {
		SKU string `json:"sku"`
		Qty int64  `json:"qty"`
		// Min is, in a partial cart, the fewest units of the line to hold.
		Min int64 `json:"min,omitempty"`
	}
	reserveRequest struct {
		Token string     `json:"token"`
		Lines []lineJSON `json:"lines"`
		// TTL is how long to hold the cart, as a Go duration ("10m").
		// Empty means the strategy's default.
		TTL string `json:"ttl,omitempty"`
		// Partial holds what there is of each line, down to its min,
		// instead of the whole cart or nothing.
		Partial bool `json:"partial,omitempty"`
	}
	extendRequest struct {
		// TTL is how long to hold the cart from now, as a Go duration.
		TTL string `json:"ttl"`
	}
	reservationJSON struct {
		ID        string     `json:"id"`
		State     string     `json:"state"`
		Lines     []lineJSON `json:"lines,omitempty"`
		ExpiresAt *time.Time `json:"expires_at,omitempty"`
		Partial   bool       `json:"partial,omitempty"`
	}
	levelsJSON struct {
		SKU         string `json:"sku"`
		Available   int64  `json:"available"`
		Held        int64  `json:"held"`
		Sold        int64  `json:"sold"`
		Backordered int64  `json:"backordered"`
	}
	tokenJSON struct {
		Token string `json:"token"`
	}
	stockJSON struct {
		SKU       string `json:"sku"`
		Available int64  `json:"available"`
	}
	// errorJSON is the body of every error answer. Error is a stable code a
	// client can switch on; Message is for people.
	errorJSON struct {
		Error     string `json:"error"`
		Message   string `json:"message"`
		Field     string `json:"field,omitempty"`
		SKU       string `json:"sku,omitempty"`
		Requested *int64 `json:"requested,omitempty"`
		Available *int64 `json:"available,omitempty"`
		State     string `json:"state,omitempty"`
		Limit     *int64 `json:"limit,omitempty"`
		Had       *int64 `json:"had,omitempty"`
	}
)

func (s *server) checkout(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.timeout)
	defer cancel()
	tok, err := s.newID(ctx)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, tokenJSON{Token: tok})
}

func (s *server) reserve(w http.ResponseWriter, r *http.Request) {
	var body reserveRequest
	if !s.decode(w, r, &body) {
		return
	}
	req := inventory.Request{ID: body.Token, Lines: make([]inventory.Line, len(body.Lines)),
		Buyer: r.Header.Get(buyerHeader), Partial: body.Partial}
	for i, l := range body.Lines {
		req.Lines[i] = inventory.Line{SKU: l.SKU, Qty: l.Qty, Min: l.Min}
	}
	if body.TTL != "" {
		ttl, err := s.parseTTL(body.TTL, 0)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		req.TTL = ttl
	}

	ctx, cancel := context.WithTimeout(r.Context(), s.timeout)
	defer cancel()
	res, err := s.inv.Reserve(ctx, req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	// A token submitted again gets the reservation it made, as it is now:
	// 201 while it is held, 200 once it is settled.
	status := http.StatusOK
	if res.State == inventory.Held {
		status = http.StatusCreated
		w.Header().Set("Location", "/reservations/"+url.PathEscape(res.ID))
	}
	writeJSON(w, status, toJSON(res))
}

// parseTTL parses a TTL of a request: a Go duration in least..s.maxTTL.
func (s *server) parseTTL(v string, least time.Duration) (time.Duration, error) {
	ttl, err := time.ParseDuration(v)
	if err == nil && (ttl < least || ttl > s.maxTTL) {
		err = fmt.Errorf("outside %s..%s", least, s.maxTTL)
	}
	if err != nil {
		return 0, &inventory.ValidationError{Field: "ttl", Reason: err.Error()}
	}
	return ttl, nil
}

// extend keeps a hold longer: the buyer is still on the payment page. The
// strategy never extends it past its maximum hold after it was reserved.
func (s *server) extend(w http.ResponseWriter, r *http.Request) {
	var body extendRequest
	if !s.decode(w, r, &body) {
		return
	}
	ttl, err := s.parseTTL(body.TTL, time.Nanosecond)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.timeout)
	defer cancel()
	res, err := inventory.Extend(ctx, s.inv, r.PathValue("id"), ttl)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toJSON(res))
}

func (s *server) lookup(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.timeout)
	defer cancel()
	res, err := s.inv.Lookup(ctx, r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toJSON(res))
}

func (s *server) commit(w http.ResponseWriter, r *http.Request) {
	s.settle(w, r, s.inv.Commit, inventory.Committed)
}

func (s *server) release(w http.ResponseWriter, r *http.Request) {
	s.settle(w, r, s.inv.Release, inventory.Released)
}

// settle commits or releases the reservation named in the path. Both are
// idempotent: doing it again answers 200 as the first time.
func (s *server) settle(w http.ResponseWriter, r *http.Request, op func(context.Context, string) error, to inventory.State) {
	ctx, cancel := context.WithTimeout(r.Context(), s.timeout)
	defer cancel()
	id := r.PathValue("id")
	if err := op(ctx, id); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, reservationJSON{ID: id, State: to.String()})
}

func (s *server) stock(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.timeout)
	defer cancel()
	sku := r.PathValue("sku")
	n, err := s.inv.Available(ctx, sku)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, stockJSON{SKU: sku, Available: n})
}

func (s *server) levels(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.timeout)
	defer cancel()
	sku := r.PathValue("sku")
	l, err := inventory.StockLevels(ctx, s.inv, sku)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, levelsJSON{SKU: sku, Available: l.Available, Held: l.Held, Sold: l.Sold, Backordered: l.Backordered})
}

func toJSON(res inventory.Reservation) reservationJSON {
	out := reservationJSON{ID: res.ID, State: res.State.String(), Lines: make([]lineJSON, len(res.Lines)), Partial: res.Partial}
	for i, l := range res.Lines {
		out.Lines[i] = lineJSON{SKU: l.SKU, Qty: l.Qty}
	}
	if !res.ExpiresAt.IsZero() {
		exp := res.ExpiresAt.UTC()
		out.ExpiresAt = &exp
	}
	return out
}

// decode reads the body into v: sent as application/json, at most
// maxBodyBytes, one JSON object, no fields v does not have. On failure it
// answers 415, 413 or 400 and reports false.
func (s *server) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		writeJSON(w, http.StatusUnsupportedMediaType, errorJSON{Error: "unsupported_media_type",
			Message: "send the body as JSON, with Content-Type: application/json"})
		return false
	}
	body := &readErrors{r: http.MaxBytesReader(w, r.Body, maxBodyBytes)}
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.Decode(&struct{}{}) != io.EOF {
		err = errors.New("more than one JSON value")
	}
	var tooBig *http.MaxBytesError
	switch {
	case err == nil:
		return true
	case errors.As(err, &tooBig):
		writeJSON(w, http.StatusRequestEntityTooLarge, errorJSON{
			Error: "too_large", Message: fmt.Sprintf("the body is over %d bytes", tooBig.Limit),
		})
	case body.err != nil:
		// The connection, not the JSON: its error names the server's
		// sockets, which are none of the client's business.
		writeJSON(w, http.StatusBadRequest, errorJSON{Error: "bad_body",
			Message: "the body could not be read whole: it was cut short or came too slowly"})
	default:
		writeJSON(w, http.StatusBadRequest, errorJSON{Error: "bad_json", Message: "the body is not the JSON expected: " + err.Error()})
	}
	return false
}

// readErrors passes reads through and keeps the last error other than
// io.EOF, so that a body cut short is told from bad JSON.
type readErrors struct {
	r   io.Reader
	err error
}

func (e *readErrors) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF {
		e.err = err
	}
	return n, err
}

// fail answers err with the status and code its kind calls for; see errorStatus.
func (s *server) fail(w http.ResponseWriter, r *http.Request, err error) {
	status, body := errorStatus(err)
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	if status == http.StatusInternalServerError {
		s.log.ErrorContext(r.Context(), "checkout: request failed", slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Any("error", err))
	}
	writeJSON(w, status, body)
}

// errorStatus maps an error of the strategy to an answer, by errors.Is and
// errors.As alone:
//
//	409 insufficient_stock, limit_exceeded, conflict, not_held
//	422 invalid_request, token_invalid, token_expired
//	404 not_found, unknown_sku
//	501 not_supported (the strategy does not offer the feature)
//	503 contended, outcome_unknown, unavailable, timeout (with Retry-After)
//	500 internal
//
// Every 503 means: send the same request again, with the same token or ID.
// Reserve, Commit and Release are idempotent, so a retry never takes stock
// twice, and it settles an outcome the server could not know.
func errorStatus(err error) (int, errorJSON) {
	var (
		short   *inventory.InsufficientStockError
		unknown *inventory.UnknownSKUError
		state   *inventory.StateError
		invalid *inventory.ValidationError
		limit   *inventory.LimitError
	)
	msg := err.Error()
	switch {
	// First: an unknown outcome wraps the transport error, which may match
	// the cases below.
	case errors.Is(err, inventory.ErrOutcomeUnknown):
		return http.StatusServiceUnavailable, errorJSON{Error: "outcome_unknown",
			Message: "the outcome is unknown: send the same request again, with the same token, to learn it"}
	// Next: a store that could not be reached wraps the dial's error, which
	// may be a context's.
	case errors.Is(err, inventory.ErrUnavailable):
		return http.StatusServiceUnavailable, errorJSON{Error: "unavailable",
			Message: "the store could not be reached and nothing changed: send the same request again, with the same token, in a moment"}
	case errors.As(err, &short):
		return http.StatusConflict, errorJSON{Error: "insufficient_stock", Message: msg,
			SKU: short.SKU, Requested: &short.Requested, Available: &short.Available}
	case errors.Is(err, inventory.ErrInsufficientStock):
		return http.StatusConflict, errorJSON{Error: "insufficient_stock", Message: msg}
	case errors.As(err, &limit):
		return http.StatusConflict, errorJSON{Error: "limit_exceeded", Message: msg, SKU: limit.SKU, Limit: &limit.Limit, Had: &limit.Had}
	case errors.Is(err, inventory.ErrLimitExceeded):
		return http.StatusConflict, errorJSON{Error: "limit_exceeded", Message: msg}
	case errors.Is(err, inventory.ErrUnsupported):
		return http.StatusNotImplemented, errorJSON{Error: "not_supported", Message: msg}
	case errors.Is(err, inventory.ErrConflict):
		return http.StatusConflict, errorJSON{Error: "conflict",
			Message: "this token was already used for another cart: get a new token from GET /checkout"}
	case errors.As(err, &state):
		return http.StatusConflict, errorJSON{Error: "not_held", Message: msg, State: state.State.String()}
	case errors.Is(err, inventory.ErrNotHeld):
		return http.StatusConflict, errorJSON{Error: "not_held", Message: msg}
	case errors.Is(err, token.ErrExpiredToken):
		return http.StatusUnprocessableEntity, errorJSON{Error: "token_expired",
			Message: "the checkout token has expired: get a new one from GET /checkout"}
	case errors.Is(err, token.ErrInvalidToken):
		return http.StatusUnprocessableEntity, errorJSON{Error: "token_invalid",
			Message: "the token was not issued by this shop: get one from GET /checkout"}
	case errors.As(err, &invalid):
		return http.StatusUnprocessableEntity, errorJSON{Error: "invalid_request", Message: msg, Field: invalid.Field}
	case errors.Is(err, inventory.ErrInvalidRequest):
		return http.StatusUnprocessableEntity, errorJSON{Error: "invalid_request", Message: msg}
	case errors.As(err, &unknown):
		return http.StatusNotFound, errorJSON{Error: "unknown_sku", Message: msg, SKU: unknown.SKU}
	case errors.Is(err, inventory.ErrUnknownSKU):
		return http.StatusNotFound, errorJSON{Error: "unknown_sku", Message: msg}
	case errors.Is(err, inventory.ErrNotFound):
		return http.StatusNotFound, errorJSON{Error: "not_found", Message: "no reservation has this id"}
	case errors.Is(err, inventory.ErrContended):
		return http.StatusServiceUnavailable, errorJSON{Error: "contended",
			Message: "too many buyers at once: send the same request again, with the same token"}
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return http.StatusServiceUnavailable, errorJSON{Error: "timeout",
			Message: "the request took too long: send the same request again, with the same token"}
	}
	return http.StatusInternalServerError, errorJSON{Error: "internal",
		Message: "something went wrong on our side: sending the same request again, with the same token, is safe"}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
