// Package mapping owns the role catalogue (services, roles, firm-type
// eligibility, admin roles, CCMS responsibility codes, inheritance, conflicts,
// permission bands and special roles) and the ordered mapping rules that turn
// source facts (groups, attributes, firms, offices, legacy CWA access) into
// desired grants. The engine is pure: Evaluate(Facts) returns the desired
// grants with their reasons, the roles refused and why, conflicts, and the
// user's Incomplete/Complete status; Explain renders "why this role / why not
// that one". It does no I/O beyond reading the two YAML files.
package mapping
