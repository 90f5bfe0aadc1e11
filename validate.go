package inventory

import (
	"fmt"
	"unicode"
	"unicode/utf8"
)

// Validate checks a request against the limits every strategy enforces:
// ID valid (see ValidateID); Buyer empty or valid by the rule of IDs;
// 1..MaxLines lines; each SKU valid (see ValidateSKU) and present once; each
// Qty in 1..MaxQty; each Min 0 without Partial, and in 0..Qty with it;
// TTL >= 0. The error is a *ValidationError that errors.Is
// ErrInvalidRequest.
func (r Request) Validate() error {
	if err := ValidateID(r.ID); err != nil {
		return err
	}
	if r.Buyer != "" {
		if err := validateText("Buyer", r.Buyer, MaxIDLen); err != nil {
			return err
		}
	}
	if len(r.Lines) == 0 {
		return &ValidationError{Field: "Lines", Reason: "no lines"}
	}
	if len(r.Lines) > MaxLines {
		return &ValidationError{Field: "Lines", Reason: fmt.Sprintf("%d lines, at most %d allowed", len(r.Lines), MaxLines)}
	}
	if r.TTL < 0 {
		return &ValidationError{Field: "TTL", Reason: "negative"}
	}
	seen := make(map[string]struct{}, len(r.Lines))
	for i, l := range r.Lines {
		if err := ValidateSKU(l.SKU); err != nil {
			err.(*ValidationError).Field = fmt.Sprintf("Lines[%d].SKU", i)
			return err
		}
		if _, dup := seen[l.SKU]; dup {
			return &ValidationError{Field: fmt.Sprintf("Lines[%d].SKU", i), Reason: fmt.Sprintf("sku %q appears more than once", l.SKU)}
		}
		seen[l.SKU] = struct{}{}
		if l.Qty < 1 || l.Qty > MaxQty {
			return &ValidationError{Field: fmt.Sprintf("Lines[%d].Qty", i), Reason: fmt.Sprintf("%d is outside 1..%d", l.Qty, MaxQty)}
		}
		switch {
		case !r.Partial && l.Min != 0:
			return &ValidationError{Field: fmt.Sprintf("Lines[%d].Min", i), Reason: fmt.Sprintf("%d without Partial, where it must be 0", l.Min)}
		case l.Min < 0 || l.Min > l.Qty:
			return &ValidationError{Field: fmt.Sprintf("Lines[%d].Min", i), Reason: fmt.Sprintf("%d is outside 0..%d (the line's Qty)", l.Min, l.Qty)}
		}
	}
	return nil
}

// ValidateID checks a reservation ID by the rule of SKUs: 1..MaxIDLen bytes
// of valid UTF-8 with no control characters (NUL included), so that every
// store, whatever it keeps text in, can hold it as given.
func ValidateID(id string) error {
	return validateText("ID", id, MaxIDLen)
}

// ValidateSKU checks a SKU: 1..MaxSKULen bytes of valid UTF-8 with no control
// characters.
func ValidateSKU(sku string) error {
	return validateText("SKU", sku, MaxSKULen)
}

// validateText checks the rule IDs and SKUs share: 1..max bytes of valid
// UTF-8 with no control characters.
func validateText(field, s string, max int) error {
	switch {
	case s == "":
		return &ValidationError{Field: field, Reason: "empty"}
	case len(s) > max:
		return &ValidationError{Field: field, Reason: fmt.Sprintf("%d bytes, at most %d allowed", len(s), max)}
	case !utf8.ValidString(s):
		return &ValidationError{Field: field, Reason: "not valid UTF-8"}
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return &ValidationError{Field: field, Reason: fmt.Sprintf("control character %U", r)}
		}
	}
	return nil
}

// ValidateStock checks the arguments of Stocker.SetStock.
func ValidateStock(sku string, available int64) error {
	if err := ValidateSKU(sku); err != nil {
		return err
	}
	if available < 0 || available > MaxStock {
		return &ValidationError{Field: "available", Reason: fmt.Sprintf("%d is outside 0..%d", available, int64(MaxStock))}
	}
	return nil
}

// ValidateStockWith checks the arguments of StockConfigurer.SetStockWith: as
// ValidateStock, opts.Buckets in 0..MaxBuckets, opts.Limit in 0..MaxQty and
// opts.Backorder in 0..MaxStock.
func ValidateStockWith(sku string, available int64, opts StockOptions) error {
	if err := ValidateStock(sku, available); err != nil {
		return err
	}
	switch {
	case opts.Buckets < 0 || opts.Buckets > MaxBuckets:
		return &ValidationError{Field: "Buckets", Reason: fmt.Sprintf("%d is outside 0..%d", opts.Buckets, MaxBuckets)}
	case opts.Limit < 0 || opts.Limit > MaxQty:
		return &ValidationError{Field: "Limit", Reason: fmt.Sprintf("%d is outside 0..%d", opts.Limit, MaxQty)}
	case opts.Backorder < 0 || opts.Backorder > MaxStock:
		return &ValidationError{Field: "Backorder", Reason: fmt.Sprintf("%d is outside 0..%d", opts.Backorder, int64(MaxStock))}
	}
	return nil
}

// ValidateDelta checks the arguments of Stocker.AddStock. The result of
// adding delta must still be checked against MaxStock by the strategy.
func ValidateDelta(sku string, delta int64) error {
	if err := ValidateSKU(sku); err != nil {
		return err
	}
	if delta < -MaxStock || delta > MaxStock {
		return &ValidationError{Field: "delta", Reason: fmt.Sprintf("%d is outside -%d..%d", delta, int64(MaxStock), int64(MaxStock))}
	}
	return nil
}

// ValidateLimit checks the limit given to Expirer.ExpireDue.
func ValidateLimit(limit int) error {
	if limit <= 0 {
		return &ValidationError{Field: "limit", Reason: fmt.Sprintf("%d is not positive", limit)}
	}
	return nil
}
