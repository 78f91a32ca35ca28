package bench

import (
	"context"
	"net/http"
	"time"

	"github.com/go-chi/httprate"
	"github.com/labstack/echo/v4"
	echomw "github.com/labstack/echo/v4/middleware"
	"github.com/sethvargo/go-limiter/httplimit"
	"github.com/sethvargo/go-limiter/memorystore"
	ulule "github.com/ulule/limiter/v3"
	"github.com/ulule/limiter/v3/drivers/middleware/stdlib"
	ululememory "github.com/ulule/limiter/v3/drivers/store/memory"
	"golang.org/x/time/rate"
)

// Every peer is keyed by APIKey and allows NeverDeny requests a minute, as
// its own documentation sets it up. The net/http ones are wrapped with
// echo.WrapMiddleware, whose own cost echo-wrap-noop shows.

func setupEchoRateLimiter(_ *Suite, keys *Keys) (*Env, error) {
	store := echomw.NewRateLimiterMemoryStoreWithConfig(echomw.RateLimiterMemoryStoreConfig{
		Rate:      rate.Limit(float64(NeverDeny) / 60),
		Burst:     NeverDeny,
		ExpiresIn: 3 * time.Minute,
	})
	mw := echomw.RateLimiterWithConfig(echomw.RateLimiterConfig{
		Store:               store,
		IdentifierExtractor: func(c echo.Context) (string, error) { return APIKey(c.Request()), nil },
	})
	return &Env{Handler: newEcho(mw), Keys: keys, Want: http.StatusOK}, nil
}

func setupHTTPRate(_ *Suite, keys *Keys) (*Env, error) {
	mw := httprate.LimitBy(NeverDeny, time.Minute, func(r *http.Request) (string, error) { return APIKey(r), nil })
	return &Env{Handler: newEcho(echo.WrapMiddleware(mw)), Keys: keys, Want: http.StatusOK}, nil
}

func setupGoLimiter(_ *Suite, keys *Keys) (*Env, error) {
	store, err := memorystore.New(&memorystore.Config{Tokens: NeverDeny, Interval: time.Minute})
	if err != nil {
		return nil, err
	}
	mw, err := httplimit.NewMiddleware(store, func(r *http.Request) (string, error) { return APIKey(r), nil })
	if err != nil {
		return nil, err
	}
	return &Env{
		Handler: newEcho(echo.WrapMiddleware(mw.Handle)), Keys: keys, Want: http.StatusOK,
		Close: func() { store.Close(context.Background()) },
	}, nil
}

func setupUlule(_ *Suite, keys *Keys) (*Env, error) {
	l := ulule.New(ululememory.NewStore(), ulule.Rate{Period: time.Minute, Limit: NeverDeny})
	mw := stdlib.NewMiddleware(l, stdlib.WithKeyGetter(APIKey))
	return &Env{Handler: newEcho(echo.WrapMiddleware(mw.Handler)), Keys: keys, Want: http.StatusOK}, nil
}
