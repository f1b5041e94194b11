package cli

import "strconv"

// Count is n and the noun, singular for one: "1 run", "2 runs". many is the
// plural ("" adds an s).
func Count(n int, one, many string) string {
	if many == "" {
		many = one + "s"
	}
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}
