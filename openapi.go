// Package paypage holds what the repository's root carries into the
// binary: the OpenAPI description of the shop API, the processor API and
// the webhooks (openapi.yaml), which the service serves at
// GET /v1/openapi.yaml.
package paypage

import _ "embed"

// OpenAPI is openapi.yaml.
//
//go:embed openapi.yaml
var OpenAPI []byte
