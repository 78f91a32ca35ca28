package rediscall

import (
	"fmt"
	"strings"
)

// Prefix returns the key prefix a store configured with prefix uses: prefix
// itself, or def when prefix is empty. It fails when the prefix contains '{'
// or '}', which would change the hash slot of the store's keys on Redis
// Cluster: the stores hash-tag each key right after the prefix.
func Prefix(prefix, def string) (string, error) {
	if prefix == "" {
		prefix = def
	}
	if strings.ContainsAny(prefix, "{}") {
		return "", fmt.Errorf("redisstore: Prefix %q contains '{' or '}'", prefix)
	}
	return prefix, nil
}
