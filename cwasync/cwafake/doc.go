// Package cwafake is a faithful fake of the legacy CWA directory as the
// agency's Provider Data API exposes it (DOMAIN.md, "The legacy CWA side"),
// for tests and the demo. It serves, from a JSON Fixture:
//
//	GET /provider-offices/snapshot                 {"offices":[{firmNumber, firmName, firmType, parentFirmNumber,
//	                                                 officeAccountNumber, officeAddressLine1..3,
//	                                                 officeAddressCity, officeAddressPostcode}]}
//	GET /provider-firms/{firmNumber}/provider-users {"users":[{userLogin, firstName, lastName, email}]}
//	GET /provider-users/{userLogin}/provider-offices {"officeCodes":[{"firmOfficeCode":"0Q731M"}]}
//	GET /provider-users/exists?userEmail=E          {"user":{"userLogin":"..."}} or 404
//
// Every request must carry the API key header (401 otherwise); errors are
// {"error": message, "code": CODE}. Faults can be switched on at run time
// (Handler.Inject): latency, 500, 429 with Retry-After, 401, a truncated
// body, malformed JSON and the service's out-of-hours 503 refusal
// (code OUT_OF_HOURS). The provider-users list shape is dirsyncd's own
// decision (the public documentation does not show it); cwasync decodes the
// same shape.
//
// Handler is an http.Handler for httptest; Server listens on an address and
// serves until its context ends (the in-process fake of `make run`).
// Generate builds large fixtures for benchmarks, and ServeLean serves a
// Handler with a minimal HTTP/1.1 server for the sync benchmark (same
// answers and faults, a fraction of net/http's server CPU per request).
package cwafake
