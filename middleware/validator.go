package middleware

import (
	stderrors "errors"
	"fmt"
	"reflect"
	"strings"
	"unicode/utf8"

	"github.com/go-playground/validator/v10"

	apierrors "github.com/gatekit/gatekit/errors"
)

// Validator is an echo.Validator on go-playground/validator/v10 whose
// failures are 400 invalid_argument errors naming the field by its JSON
// path ("messages[0].role") with a message in the style of
// "Invalid 'temperature': decimal above maximum value. Expected a value <= 2,
// but got 3 instead.". It is safe for concurrent use.
type Validator struct {
	v *validator.Validate
}

// NewValidator returns a Validator that names fields by their json tags.
func NewValidator() *Validator {
	v := validator.New(validator.WithRequiredStructEnabled())
	v.RegisterTagNameFunc(func(f reflect.StructField) string {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch name {
		case "-":
			return ""
		case "":
			return f.Name
		}
		return name
	})
	return &Validator{v: v}
}

// Engine returns the underlying validator, for registering custom rules.
func (v *Validator) Engine() *validator.Validate { return v.v }

// Validate checks i's `validate` tags. It returns nil, or an
// *apierrors.Error for the first failing field. Values that are not structs
// (or pointers to them) pass.
func (v *Validator) Validate(i any) error {
	t := reflect.TypeOf(i)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct {
		return nil
	}
	err := v.v.Struct(i)
	if err == nil {
		return nil
	}
	if e := fromValidation(err, t.Name(), true); e != nil {
		return e
	}
	var invalid *validator.InvalidValidationError
	if stderrors.As(err, &invalid) {
		return apierrors.InternalError(err)
	}
	return apierrors.InvalidRequest("").WithCause(err)
}

// fromValidator maps validator.ValidationErrors to invalid_argument for its
// first field, or returns nil for any other error. The errors may come from
// any validator, so the root struct's name is inferred; see fromValidation.
func fromValidator(err error) *apierrors.Error { return fromValidation(err, "", false) }

// fromValidation maps validator.ValidationErrors to invalid_argument for
// its first field, or returns nil for any other error. root is the name of
// the validated struct type ("" for an anonymous one), which the validator
// puts before every namespace it has one for; when rootKnown is false, the
// first segment is taken for the root when the JSON and Go namespaces agree
// on it.
func fromValidation(err error, root string, rootKnown bool) *apierrors.Error {
	var ves validator.ValidationErrors
	if !stderrors.As(err, &ves) || len(ves) == 0 {
		return nil
	}
	fe := ves[0]
	ns := fe.Namespace()
	if !rootKnown {
		first, _, _ := strings.Cut(ns, ".")
		goFirst, _, _ := strings.Cut(fe.StructNamespace(), ".")
		if first == goFirst && first != ns {
			root = first
		}
	}
	param := ns
	if root != "" {
		param = strings.TrimPrefix(ns, root+".")
	}
	param = apierrors.Clip(param)
	return apierrors.InvalidArgument(param, validationMessage(param, fe))
}

// validationMessage words one failed rule for a client.
func validationMessage(param string, fe validator.FieldError) string {
	kind := fe.Kind()
	got := fe.Value()
	switch fe.Tag() {
	case "required", "required_if", "required_unless", "required_with", "required_without":
		return fmt.Sprintf("Missing required parameter: '%s'.", param)
	case "oneof":
		return fmt.Sprintf("Invalid value for '%s': '%s'. Supported values are: %s.", param, apierrors.Clip(fmt.Sprint(got)), quoteList(strings.Fields(fe.Param())))
	case "min", "gte", "max", "lte", "gt", "lt", "len":
		return boundMessage(param, fe.Tag(), fe.Param(), kind, got)
	case "email", "url", "uri", "uuid", "uuid4", "hostname", "ip":
		return fmt.Sprintf("Invalid '%s': expected a valid %s.", param, fe.Tag())
	}
	return fmt.Sprintf("Invalid '%s': the value does not satisfy the rule '%s'.", param, fe.ActualTag())
}

// boundMessage words a min/max style failure by the kind of value it
// bounds: numbers by value, strings by length, arrays and objects by count.
func boundMessage(param, tag, bound string, kind reflect.Kind, got any) string {
	var op string
	switch tag {
	case "min", "gte":
		op = ">="
	case "max", "lte":
		op = "<="
	case "gt":
		op = ">"
	case "lt":
		op = "<"
	default:
		op = "=="
	}
	below := tag == "min" || tag == "gte" || tag == "gt"
	switch kind {
	case reflect.String:
		n := utf8.RuneCountInString(fmt.Sprint(got))
		if below {
			return fmt.Sprintf("Invalid '%s': string too short. Expected a string with minimum length %s, but got a string with length %d instead.", param, bound, n)
		}
		if tag == "len" {
			return fmt.Sprintf("Invalid '%s': expected a string of length %s, but got a string with length %d instead.", param, bound, n)
		}
		return fmt.Sprintf("Invalid '%s': string too long. Expected a string with maximum length %s, but got a string with length %d instead.", param, bound, n)
	case reflect.Slice, reflect.Array, reflect.Map:
		n := 0
		if v := reflect.Indirect(reflect.ValueOf(got)); v.IsValid() {
			n = v.Len()
		}
		what := "array"
		if kind == reflect.Map {
			what = "object"
		}
		switch {
		case below && n == 0:
			return fmt.Sprintf("Invalid '%s': empty %s. Expected an %s with minimum length %s, but got an empty %s instead.", param, what, what, bound, what)
		case below:
			return fmt.Sprintf("Invalid '%s': %s too short. Expected an %s with minimum length %s, but got an %s with length %d instead.", param, what, what, bound, what, n)
		case tag == "len":
			return fmt.Sprintf("Invalid '%s': expected an %s of length %s, but got an %s with length %d instead.", param, what, bound, what, n)
		}
		return fmt.Sprintf("Invalid '%s': %s too long. Expected an %s with maximum length %s, but got an %s with length %d instead.", param, what, what, bound, what, n)
	}
	num := "integer"
	if kind == reflect.Float32 || kind == reflect.Float64 {
		num = "decimal"
	}
	where := "above maximum"
	if below {
		where = "below minimum"
	}
	if tag == "len" {
		return fmt.Sprintf("Invalid '%s': expected a value %s %s, but got %v instead.", param, op, bound, got)
	}
	return fmt.Sprintf("Invalid '%s': %s %s value. Expected a value %s %s, but got %v instead.", param, num, where, op, bound, got)
}

// quoteList writes 'a', 'b', and 'c'.
func quoteList(items []string) string {
	for i, it := range items {
		items[i] = "'" + it + "'"
	}
	switch len(items) {
	case 0:
		return ""
	case 1:
		return items[0]
	case 2:
		return items[0] + " and " + items[1]
	}
	return strings.Join(items[:len(items)-1], ", ") + ", and " + items[len(items)-1]
}
