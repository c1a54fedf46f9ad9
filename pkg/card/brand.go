package card

import "strconv"

// Brand is a card scheme.
type Brand string

// Brands recognised by their issuer identification number (IIN) range.
const (
	Unknown    Brand = ""
	Visa       Brand = "visa"
	Mastercard Brand = "mastercard"
	Amex       Brand = "amex"
	JCB        Brand = "jcb"
	MIR        Brand = "mir"
	UnionPay   Brand = "unionpay"
	Discover   Brand = "discover"
	Maestro    Brand = "maestro"
	Diners     Brand = "diners"
)

type iinRange struct {
	lo, hi  int // inclusive, compared on the first len(lo) digits
	digits  int // how many leading digits the range speaks of
	brand   Brand
	lengths []int
}

// ranges are checked in order; the narrower ranges come first.
var ranges = []iinRange{
	{2200, 2204, 4, MIR, []int{16, 17, 18, 19}},
	{2221, 2720, 4, Mastercard, []int{16}},
	{51, 55, 2, Mastercard, []int{16}},
	{34, 34, 2, Amex, []int{15}},
	{37, 37, 2, Amex, []int{15}},
	{3528, 3589, 4, JCB, []int{16, 17, 18, 19}},
	{300, 305, 3, Diners, []int{14, 15, 16, 17, 18, 19}},
	{36, 36, 2, Diners, []int{14, 15, 16, 17, 18, 19}},
	{38, 39, 2, Diners, []int{14, 15, 16, 17, 18, 19}},
	{6011, 6011, 4, Discover, []int{16, 17, 18, 19}},
	{644, 649, 3, Discover, []int{16, 17, 18, 19}},
	{65, 65, 2, Discover, []int{16, 17, 18, 19}},
	{62, 62, 2, UnionPay, []int{16, 17, 18, 19}},
	{81, 81, 2, UnionPay, []int{16, 17, 18, 19}},
	{5018, 5018, 4, Maestro, maestroLengths},
	{5020, 5020, 4, Maestro, maestroLengths},
	{5038, 5038, 4, Maestro, maestroLengths},
	{5893, 5893, 4, Maestro, maestroLengths},
	{6304, 6304, 4, Maestro, maestroLengths},
	{6759, 6759, 4, Maestro, maestroLengths},
	{6761, 6763, 4, Maestro, maestroLengths},
	{4, 4, 1, Visa, []int{13, 16, 19}},
}

var maestroLengths = []int{12, 13, 14, 15, 16, 17, 18, 19}

// DetectBrand names the scheme of a number (or of its first digits, as a
// shopper types) by IIN range; Unknown when no range matches.
func DetectBrand(digits string) Brand {
	for _, r := range ranges {
		if len(digits) < r.digits {
			continue
		}
		n, err := strconv.Atoi(digits[:r.digits])
		if err != nil {
			return Unknown
		}
		if n >= r.lo && n <= r.hi {
			return r.brand
		}
	}
	return Unknown
}

func (b Brand) validLength(n int) bool {
	for _, r := range ranges {
		if r.brand != b {
			continue
		}
		for _, l := range r.lengths {
			if l == n {
				return true
			}
		}
		return false
	}
	return false
}

// Accepted reports whether paypage takes payments with this brand.
func (b Brand) Accepted() bool {
	switch b {
	case Visa, Mastercard, Amex, JCB, MIR:
		return true
	}
	return false
}

// CVVLength is the security code's length: 4 for American Express (the CID on
// the front), 3 for the others.
func (b Brand) CVVLength() int {
	if b == Amex {
		return 4
	}
	return 3
}

// Name is the brand as printed for people.
func (b Brand) Name() string {
	switch b {
	case Visa:
		return "Visa"
	case Mastercard:
		return "Mastercard"
	case Amex:
		return "American Express"
	case JCB:
		return "JCB"
	case MIR:
		return "MIR"
	case UnionPay:
		return "UnionPay"
	case Discover:
		return "Discover"
	case Maestro:
		return "Maestro"
	case Diners:
		return "Diners Club"
	}
	return ""
}

// ThreeDSProgramme is the scheme's 3-D Secure programme as shoppers know it.
func (b Brand) ThreeDSProgramme() string {
	switch b {
	case Visa:
		return "Visa Secure"
	case Mastercard:
		return "Mastercard Identity Check"
	case Amex:
		return "American Express SafeKey"
	case JCB:
		return "J/Secure"
	case MIR:
		return "MIR Accept"
	}
	return "3-D Secure"
}
