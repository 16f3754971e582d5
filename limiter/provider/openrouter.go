package provider

import (
	"strings"
	"time"

	"github.com/adaptive-rate-limiter/arl/limiter/bucket"
)

// openRouter reads OpenRouter's headers,
//
//	X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset
//
// with the reset as a Unix timestamp in milliseconds. They count requests:
// per minute, or per day for the daily allowance of free models. A reset
// well over a minute away cannot belong to a per-minute window, so it makes
// the dimension RequestsPerDay, as does a 429 whose message names the daily
// limit ("Rate limit exceeded: free-models-per-day"). "Well over" leaves room
// for the skew between arl's clock and OpenRouter's: one per-minute answer
// read as daily would throttle the key for a day, while a daily one read as
// per-minute in the last minutes of its day still holds until its reset.
//
// The 429 body repeats the headers under error.metadata.headers; they are
// read when the answer itself lacked them. A 429 that names a
// metadata.provider_name came from the model's upstream provider, not from
// this key's limits, and blocks as "upstream". 402 is out of credits:
// billing.
type openRouter struct{}

var openRouterDims = []dimHeaders{{
	dim:       bucket.Requests,
	limit:     []string{"x-ratelimit-limit"},
	remaining: []string{"x-ratelimit-remaining"},
	reset:     []string{"x-ratelimit-reset"},
	format:    resetAuto,
}}

// minuteWindow is the longest reset read as a per-minute window's: a minute,
// plus slack for clock skew.
const minuteWindow = 5 * time.Minute

// Name implements Dialect.
func (openRouter) Name() string { return OpenRouter }

// ParseAnswer implements Dialect.
func (openRouter) ParseAnswer(status int, h Header, now time.Time) Answer {
	f := fields{h: h}
	obs := bucket.Observation{At: now}
	exhausted := f.readDims(&obs, openRouterDims, now)
	if obs.Dims[bucket.Requests].Reset > minuteWindow {
		exhausted = toDaily(&obs, exhausted)
	}
	return conclude(status, obs, &f, now, exhausted, statusPolicy{})
}

// toDaily moves what was read as requests per minute to requests per day,
// and renames the exhausted dimension accordingly.
func toDaily(o *bucket.Observation, exhausted string) string {
	if o.Dims[bucket.RequestsPerDay] == (bucket.DimObservation{}) {
		o.Dims[bucket.RequestsPerDay] = o.Dims[bucket.Requests]
		o.Dims[bucket.Requests] = bucket.DimObservation{}
	}
	if exhausted == bucket.Requests.String() {
		return bucket.RequestsPerDay.String()
	}
	return exhausted
}

// ParseErrorBody implements Dialect.
func (openRouter) ParseErrorBody(status int, body []byte, now time.Time, a *Answer) {
	e, ok := decodeError(body)
	if !ok {
		return
	}
	if isBilling(e) || status == 402 {
		a.billing()
		return
	}
	if status != 429 {
		return
	}
	o := &a.Observation
	exhausted := ""
	if o.Dims[bucket.Requests] == (bucket.DimObservation{}) && o.Dims[bucket.RequestsPerDay] == (bucket.DimObservation{}) && len(e.Metadata.Headers) > 0 {
		mf := fields{h: newMapHeader(e.Metadata.Headers)}
		exhausted = mf.readDims(o, openRouterDims, now)
		if o.Dims[bucket.Requests].Reset > minuteWindow {
			exhausted = toDaily(o, exhausted)
		}
		a.Invalid += mf.invalid
	}
	msg := strings.ToLower(e.Message)
	source := strings.ToLower(string(e.Metadata.LimitSource))
	reason := exhausted
	switch {
	case e.Metadata.ProviderName != "":
		reason = ReasonUpstream
	case strings.Contains(msg, "per-day") || strings.Contains(source, "daily"):
		reason = toDaily(o, bucket.Requests.String())
	case strings.Contains(msg, "per-min"):
		reason = bucket.Requests.String()
	case reason == "":
		reason = reasonFromMessage(e.Message)
	}
	wait, _ := waitFromMessage(e.Message)
	a.refine(reason, wait)
}

// openRouterError is OpenRouter's error envelope: a numeric code and a
// message.
type openRouterError struct {
	Error openRouterErrorInner `json:"error"`
}

type openRouterErrorInner struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

// ErrorBody implements Dialect with OpenRouter's envelope,
// {"error":{"code":429,"message":...}}, which OpenAI's SDKs also read.
func (openRouter) ErrorBody(status int, _, message string) []byte {
	return mustJSON(openRouterError{Error: openRouterErrorInner{Code: status, Message: message}})
}
