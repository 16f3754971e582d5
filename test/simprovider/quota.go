package simprovider

import "time"

// Quota is one kind of hidden limit an API key can have. Every quota is a
// continuously refilling token bucket of its own (see [Server]); a request
// must fit in all of them.
type Quota uint8

// The quotas, in the order a rejection names them: the first exhausted one
// is the [Rejection]'s.
const (
	// QuotaRequests counts requests per window ([Config.RPM]).
	QuotaRequests Quota = iota
	// QuotaRequestsPerDay counts requests per day ([Config.RPD]; Groq's
	// request headers report it).
	QuotaRequestsPerDay
	// QuotaTokens counts tokens per window, prompt plus output budget times
	// choices ([Config.TPM]).
	QuotaTokens
	// QuotaInputTokens counts prompt tokens per window ([Config.InputTPM];
	// Anthropic's ITPM, Fireworks' prompt tokens, Gemini's TPM).
	QuotaInputTokens
	// QuotaOutputTokens counts output tokens per window
	// ([Config.OutputTPM]; Anthropic's OTPM, Fireworks' generated tokens).
	// See [Enforcement.OutputAsGenerated] for how it is charged.
	QuotaOutputTokens
	// QuotaTokensPerMonth counts tokens per 30 days, prompt plus output
	// budget times choices ([Config.TokensPerMonth]; Mistral).
	QuotaTokensPerMonth
	// NumQuotas is the number of quotas; not a quota.
	NumQuotas
)

// quotaNames are the quotas' names, the same as arl's names for the
// dimensions they are read into.
var quotaNames = [NumQuotas]string{
	QuotaRequests:       "requests",
	QuotaRequestsPerDay: "requests_per_day",
	QuotaTokens:         "tokens",
	QuotaInputTokens:    "input_tokens",
	QuotaOutputTokens:   "output_tokens",
	QuotaTokensPerMonth: "tokens_per_month",
}

// String returns the quota's snake_case name, the key of its rejections in
// [KeyStats.Rejected].
func (q Quota) String() string {
	if q < NumQuotas {
		return quotaNames[q]
	}
	return "unknown"
}

// The windows of the quotas that do not refill over [Config.Window].
const (
	// Day is the window of [QuotaRequestsPerDay].
	Day = 24 * time.Hour
	// Month is the window of [QuotaTokensPerMonth].
	Month = 30 * Day
)

// Enforcement is how a provider enforces the quotas a [Config] sets.
type Enforcement struct {
	// Windows holds, indexed by [Quota], the window the provider enforces a
	// per-window quota (requests, tokens, input or output tokens) over when
	// it is not Config.Window; zero keeps Config.Window. The configured
	// amount is then prorated, so that the rate stays the configured one:
	// amount × window / Config.Window, rounded down, at least 1. Azure
	// enforces requests over 10 s, Together and Fireworks state limits per
	// second. Per-day and per-month quotas ignore it.
	Windows [NumQuotas]time.Duration
	// OutputAsGenerated charges QuotaOutputTokens with the tokens actually
	// generated, as the answer ends, and admits a request while the quota is
	// not exhausted (at least one token left). Without it, the quota is
	// charged the output budget times choices at admission, and the unused
	// part is given back when the answer ends (Anthropic estimates output
	// tokens from max_tokens at the start and adjusts them at the end).
	OutputAsGenerated bool
}

// amount returns the configured amount of quota q per its window; 0 is
// unlimited.
func (c Config) amount(q Quota) int64 {
	switch q {
	case QuotaRequests:
		return c.RPM
	case QuotaRequestsPerDay:
		return c.RPD
	case QuotaTokens:
		return c.TPM
	case QuotaInputTokens:
		return c.InputTPM
	case QuotaOutputTokens:
		return c.OutputTPM
	case QuotaTokensPerMonth:
		return c.TokensPerMonth
	default:
		return 0
	}
}

// shape returns the capacity and window quota q is enforced with: the
// configured amount over Config.Window, or prorated to the provider's own
// window (see Enforcement.Windows), or over a day or a month.
func shape(q Quota, amount int64, window time.Duration, e Enforcement) (int64, time.Duration) {
	switch {
	case q == QuotaRequestsPerDay:
		return amount, Day
	case q == QuotaTokensPerMonth:
		return amount, Month
	case amount <= 0:
		return 0, window
	}
	own := e.Windows[q]
	if own <= 0 || own == window {
		return amount, window
	}
	prorated := float64(amount) * own.Seconds() / window.Seconds()
	return int64(min(max(prorated, 1), float64(maxCharge))), own
}
