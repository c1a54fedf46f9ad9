package card

// PANOf makes a PAN of any digits, for tests of lengths no accepted brand issues.
func PANOf(digits string) PAN { return PAN{digits: digits, brand: DetectBrand(digits)} }
