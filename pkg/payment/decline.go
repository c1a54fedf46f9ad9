package payment

import "github.com/paypage/paypage/pkg/processor"

// declineMessages are the English texts that the API shows beside a decline
// code; the page shows its own translations of the same codes.
var declineMessages = map[string]string{
	processor.DoNotHonor:           "The bank declined the payment. Please use another card or contact your bank.",
	processor.InsufficientFunds:    "There are not enough funds on the card.",
	processor.ExpiredCard:          "The card has expired.",
	processor.IncorrectCVC:         "The card details were entered incorrectly.",
	processor.NotEnabledInternet:   "The card is not enabled for internet payments. Please contact your bank.",
	processor.Unavailable:          "The payment system is temporarily unavailable. Nothing was charged; please try again.",
	processor.AuthenticationFailed: "3-D Secure authentication failed.",
	processor.InvalidCard:          "The card cannot be used for this payment.",
	processor.TryAgain:             "The payment could not be completed in time. Nothing was charged; please try again.",
	"qr_expired":                   "The QR code expired before it was paid. Nothing was charged.",
}

// DeclineMessage returns the English message for a decline code.
func DeclineMessage(code string) string {
	if m, ok := declineMessages[code]; ok {
		return m
	}
	return "The payment was declined."
}
