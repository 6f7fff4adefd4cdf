package cwasync

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"

	"github.com/dirsyncd/dirsyncd/cwasync/cwafake"
)

// officeCodesSeeds are bodies of the per-login endpoint: the usual form,
// and forms the fast path must leave to encoding/json.
var officeCodesSeeds = []string{
	`{"officeCodes":[{"firmOfficeCode":"0Q731M"},{"firmOfficeCode":"1A001L"}]}`,
	`{"officeCodes":[]}`,
	` { "officeCodes" : [ { "firmOfficeCode" : "0Q731M" } ] } ` + "\n",
	`{"officeCodes":[{"firmOfficeCode":"0Q731M","x":1}]}`,
	`{"officeCodes":[{"firmOfficeCode":"0Q\u0037"}]}`,
	`{"officeCodes":[{"firmOfficeCode":"é"}]}`,
	`{"officeCodes":null}`,
	`{"officeCodes":[null]}`,
	`{"officeCodes":[],"officeCodes":[{"firmOfficeCode":"A"}]}`,
	`{"officeCodes":[{"firmOfficeCode":"A"},]}`,
	`{"officeCodes":[{"firmOfficeCode":"A"}]} trailing`,
	`{"officeCodes":[{"firmOfficeCode":"A"}]`,
	`{"offices":[]}`,
	`{}`,
	`[]`,
	``,
}

// TestOfficeCodesFastPath: the fast path decodes the usual form, and
// whatever it accepts decodes exactly as encoding/json decodes it.
func TestOfficeCodesFastPath(t *testing.T) {
	var v officeCodesBody
	if !v.decodeFast([]byte(officeCodesSeeds[0])) || len(*v.OfficeCodes) != 2 || (*v.OfficeCodes)[1].FirmOfficeCode != "1A001L" {
		t.Fatalf("usual body not taken by the fast path: %+v", v)
	}
	for _, s := range officeCodesSeeds {
		checkOfficeCodesFastPath(t, []byte(s))
	}
}

func FuzzOfficeCodesFastPath(f *testing.F) {
	for _, s := range officeCodesSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(checkOfficeCodesFastPath)
}

func checkOfficeCodesFastPath(t *testing.T, b []byte) { checkFastPath[officeCodesBody](t, b) }

// checkFastPath: when the fast path of a body type T accepts b, encoding/json
// accepts it too and decodes the same value.
func checkFastPath[T any, PT interface {
	*T
	decodeFast([]byte) bool
}](t *testing.T, b []byte) {
	var fast T
	if !PT(&fast).decodeFast(b) {
		return
	}
	var std T
	if err := json.Unmarshal(b, &std); err != nil {
		t.Fatalf("fast path accepted %q, which encoding/json refuses: %v", b, err)
	}
	if !reflect.DeepEqual(fast, std) {
		t.Fatalf("%q: fast path %+v, encoding/json %+v", b, fast, std)
	}
}

// firmUsersSeeds are bodies of the per-firm endpoint.
var firmUsersSeeds = []string{
	`{"users":[{"userLogin":"JSMITH","firstName":"John","lastName":"Smith","email":"J.Smith@smith.example"},{"userLogin":"X"}]}`,
	`{"users":[]}`,
	` {"users" : [ {"email":"a@b.example" , "userLogin":"A"} , {} ] }`,
	`{"users":[{"userLogin":"A","userLogin":"B"}]}`,
	`{"users":[{"UserLogin":"A"}]}`,
	`{"users":[{"userLogin":"A","phone":"1"}]}`,
	`{"users":[{"userLogin":"Zoë"}]}`,
	`{"users":[{"userLogin":null}]}`,
	`{"users":[{"userLogin":1}]}`,
	`{"users":null}`,
	`{"users":[{"userLogin":"A"}],}`,
	`{"users":[{"userLogin":"A",}]}`,
	`{"users":[{"userLogin":"A"}]}x`,
	`{}`,
}

// TestFirmUsersFastPath: as TestOfficeCodesFastPath, for the per-firm list.
func TestFirmUsersFastPath(t *testing.T) {
	var v firmUsersBody
	if !v.decodeFast([]byte(firmUsersSeeds[0])) || len(*v.Users) != 2 || (*v.Users)[0].Email != "J.Smith@smith.example" {
		t.Fatalf("usual body not taken by the fast path: %+v", v)
	}
	for _, s := range firmUsersSeeds {
		checkFirmUsersFastPath(t, []byte(s))
	}
}

func FuzzFirmUsersFastPath(f *testing.F) {
	for _, s := range firmUsersSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(checkFirmUsersFastPath)
}

func checkFirmUsersFastPath(t *testing.T, b []byte) { checkFastPath[firmUsersBody](t, b) }

// TestFastPathsTakeTheFakesBodies: the generated benchmark fixture's
// answers are in the usual forms (so the benchmark measures the fast paths).
func TestFastPathsTakeTheFakesBodies(t *testing.T) {
	fx := cwafake.Generate(cwafake.GenOptions{Firms: 3, OfficesPerFirm: 2, Logins: 20})
	h := cwafake.NewHandler(fx, "k")
	for _, tc := range []struct {
		path string
		v    interface{ decodeFast([]byte) bool }
	}{
		{"/provider-firms/" + fx.Offices[0].FirmNumber + "/provider-users", &firmUsersBody{}},
		{"/provider-users/" + fx.Users[0].UserLogin + "/provider-offices", &officeCodesBody{}},
	} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, tc.path, nil)
		req.Header.Set(cwafake.DefaultAPIKeyHeader, "k")
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK || !tc.v.decodeFast(rec.Body.Bytes()) {
			t.Errorf("%s: %d %s not taken by the fast path", tc.path, rec.Code, rec.Body.Bytes())
		}
	}
}
