package scim

import (
	"errors"
	"reflect"
	"testing"

	filter "github.com/scim2/filter-parser/v2"

	"github.com/dirsyncd/dirsyncd/directory"
)

// clientError fails the test unless err is a SCIM 4xx error: fuzzed input
// must never become a 500.
func clientError(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	var se *Error
	if !errors.As(err, &se) || se.Status < 400 || se.Status >= 500 {
		t.Fatalf("%s: not a 4xx SCIM error: %v", what, err)
	}
}

func FuzzFilter(f *testing.F) {
	for _, s := range []string{
		`userName eq "bjensen"`, `externalId eq "a"`, `name.familyName co "O'Malley"`,
		`userName sw "J"`, `title pr`, `meta.lastModified gt "2011-05-13T04:42:34Z"`,
		`emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]`,
		`emails[type eq "work"].value eq "x@y.z"`, `members[value eq "u"]`,
		`not (active eq true) and (userType eq "Employee" or userType eq "Intern")`,
		`urn:ietf:params:scim:schemas:core:2.0:User:userName eq "x"`, `userName EQ "MiXed"`, `name.givenName sw "a b"`,
		`and eq "x"`, `userName eq ""`, `userName pr`, `emails.value ew "@x.org"`, `((((`, `userName eq "\"`, `a[b[c eq 1]]`, "userName eq \"\x00\"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if fast, ok := fastFilter(s); ok {
			slow, err := filter.ParseFilter([]byte(s))
			if err != nil {
				t.Fatalf("%q: fast path parsed, general parser failed: %v", s, err)
			}
			if !reflect.DeepEqual(fast, slow) {
				t.Fatalf("%q: fast path %#v, general parser %#v", s, fast, slow)
			}
		}
		for _, def := range []*resourceDef{userDef, groupDef} {
			_, err := parseFilter(def, s)
			clientError(t, s, err)
			_, err = sortField(def, s)
			clientError(t, s, err)
			_, err = parseProjection(def, s, s)
			clientError(t, s, err)
		}
	})
}

func FuzzPatch(f *testing.F) {
	for _, s := range []string{
		`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Replace","path":"active","value":"False"}]}`,
		`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","value":{"active":false,"name.givenName":"x","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department":"d"}}]}`,
		`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Add","path":"emails[type eq \"work\"].value","value":"a@b.c"}]}`,
		`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"remove","path":"emails[type eq \"work\"]"}]}`,
		`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"add","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager","value":"m"}]}`,
		`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"members","value":[]},{"op":"remove","path":"members[value eq \"x\"]"}]}`,
		`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","value":{"id":"1","schemas":[],"displayName":"g","members":[{"value":"u"}]}}]}`,
		`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"remove","path":"members","value":[{"value":"u"}]}]}`,
		`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"name","value":{"givenName":1}}]}`,
		`{"Operations":[]}`, `[]`, `{`, `null`,
	} {
		f.Add([]byte(s))
	}
	base := directory.User{ID: "u1", UserName: "ada", Email: "ada@example.org", Active: true,
		Emails: []directory.Email{{Value: "ada@example.org", Type: "work", Primary: true}},
		Attrs:  []byte(`{"title":"Clerk","phoneNumbers":[{"value":"1","type":"work"}],"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"department":"x"}}`)}
	f.Fuzz(func(t *testing.T, body []byte) {
		ops, err := parsePatch(body)
		clientError(t, "parse", err)
		if err != nil {
			return
		}
		st, err := userState(base)
		if err != nil {
			t.Fatal(err)
		}
		pt := patcher{def: userDef, st: st}
		for _, op := range ops {
			if err := pt.apply(op); err != nil {
				clientError(t, "apply user", err)
				return
			}
		}
		u, err := userFromState(pt.st, base)
		clientError(t, "user from state", err)
		if err == nil {
			if _, err := renderUser(u, "https://x/scim/v2", nil, nil, true, true); err != nil {
				t.Fatalf("render: %v", err)
			}
		}
		gpt := patcher{def: groupDef, st: groupState(directory.Group{ID: "g", DisplayName: "G"}), members: func(op string, vf filterExpr, value any, hasValue bool) error {
			if vf != nil {
				_, err := memberIDsFromFilter(vf)
				return err
			}
			if hasValue && value != nil {
				_, err := memberIDs(value)
				return err
			}
			return nil
		}}
		for _, op := range ops {
			if err := gpt.apply(op); err != nil {
				clientError(t, "apply group", err)
				return
			}
		}
		_, err = groupFromState(gpt.st, directory.Group{})
		clientError(t, "group from state", err)
	})
}

// FuzzPatchPath: the PATCH path fast path parses exactly what the general
// parser parses (or leaves the path to it).
func FuzzPatchPath(f *testing.F) {
	for _, s := range []string{
		`members`, `name.givenName`, `members[value eq "2819c223"]`, `emails[type eq "work"].value`,
		`emails[type eq "work"]`, `addresses[type eq "work"].streetAddress`, `active`, `title`,
		`members[value eq "a" or value eq "b"]`, `emails[type eq "work" and primary eq true]`, `members[value pr]`,
		`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager`, `name.givenName.x`, `a[b eq "c"].d.e`,
		`members[value eq "x"]x`, `members[]`, `emails[value co ""]`, `x[and eq "y"]`, `members[value EQ "Q"]`, `1abc`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fast, ok := fastPath(s)
		if !ok {
			return
		}
		slow, err := filter.ParsePath([]byte(s))
		if err != nil {
			t.Fatalf("%q: fast path parsed %#v, general parser failed: %v", s, fast, err)
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("%q:\n fast    %#v\n general %#v", s, fast, slow)
		}
	})
}

func TestFastPathTakesTheCommonPaths(t *testing.T) {
	for _, s := range []string{`members`, `name.givenName`, `members[value eq "2819c223"]`, `emails[type eq "work"].value`, `title`} {
		if _, ok := fastPath(s); !ok {
			t.Errorf("%q: not on the fast path", s)
		}
	}
	for _, s := range []string{`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager`, `members[value eq "a" or value eq "b"]`, `emails[`} {
		if _, ok := fastPath(s); ok {
			t.Errorf("%q: on the fast path", s)
		}
	}
}
