package errors

import "testing"

func TestCatalogIndex(t *testing.T) {
	for i, s := range catalog {
		if got := index(s.Code); got != i {
			t.Errorf("index(%q) = %d, want %d", s.Code, got, i)
		}
	}
	if index("nope") != -1 {
		t.Error("an unknown code has a row")
	}
}
