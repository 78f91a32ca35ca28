package redisstore_test

import (
	"context"
	"fmt"
	"log"

	"github.com/redis/go-redis/v9"

	"github.com/gatekit/gatekit/ratelimit"
	"github.com/gatekit/gatekit/ratelimit/redisstore"
)

func ExampleNew() {
	client := redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs: []string{"localhost:6379"},
		// Let go-redis stop waiting at the store's Timeout.
		ContextTimeoutEnabled: true,
	})
	defer client.Close()

	limiter, err := redisstore.New(client, nil) // Redis's clock, 100ms timeout
	if err != nil {
		log.Fatal(err)
	}
	d, err := limiter.Allow(context.Background(), "principal-42:/v1/chat", ratelimit.PerMinute(60), 1)
	if err != nil {
		// Redis is unreachable: fail open or closed, as configured.
		log.Printf("rate limit store: %v", err)
		return
	}
	if !d.Allowed {
		fmt.Printf("429: retry in %v\n", d.RetryAfter)
		return
	}
	fmt.Printf("allowed, %d left\n", d.Remaining)
}
