package scim

import "testing"

// TestFilterCaseExactness: a filter compares case-insensitively the
// attributes whose schema says caseExact false (RFC 7643 §2.2, §4.1:
// name.givenName, name.familyName, userType, emails.type) and exactly the
// caseExact ones (externalId, id).
func TestFilterCaseExactness(t *testing.T) { bothStores(t, testFilterCaseExactness) }

func testFilterCaseExactness(t *testing.T, e *env) {
	e.createUser("case.one@example.org", map[string]any{"externalId": "Ext-One", "userType": "Employee",
		"name": map[string]any{"givenName": "Ann", "familyName": "Ölund"}})
	e.createUser("case.two@example.org", map[string]any{"name": map[string]any{"givenName": "Bob", "familyName": "Smith"}})
	for _, c := range []struct {
		filter string
		want   float64
	}{
		{`name.familyName eq "smith"`, 1},
		{`name.familyName eq "SMITH"`, 1},
		{`name.familyName sw "sm"`, 1},
		{`name.familyName eq "Ölund"`, 1}, // non-ASCII: at least the exact spelling matches
		{`name.givenName co "NN"`, 1},
		{`name.givenName eq "ann" or name.givenName eq "bob"`, 2},
		{`userType eq "employee"`, 1},
		{`emails[type eq "WORK"]`, 2},
		{`emails[type eq "Work" and value eq "CASE.ONE@example.org"]`, 1},
		{`externalId eq "ext-one"`, 0}, // caseExact
		{`externalId eq "Ext-One"`, 1},
	} {
		r := e.must(e.do("GET", "/Users?count=0&filter="+c.filter, nil), 200)
		if r.Body["totalResults"] != c.want {
			t.Errorf("%s: totalResults %v, want %v", c.filter, r.Body["totalResults"], c.want)
		}
	}
}
