package audience

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/petrel-mta/petrel/internal/httpapi"
)

// HandlerOptions configure Handler.
type HandlerOptions struct {
	// Context bounds the import jobs the handler starts (petreld's
	// lifetime); nil means context.Background().
	Context context.Context
	// Logger gets internal errors; nil means slog.Default().
	Logger *slog.Logger
	// MaxUpload caps one CSV upload in bytes (default 1 GiB).
	MaxUpload int64
	// ResumeImports starts, in the background, every import job and bulk
	// upsert job left queued or running by a previous process (petreld
	// sets it), and list-cleaning jobs when Verify is set.
	ResumeImports bool
	// Verify verifies addresses for list cleaning (cleaning.go); nil
	// answers POST .../cleanings with 503.
	Verify VerifyFunc
}

// maxJSONBody caps JSON request bodies.
const maxJSONBody = 16 << 20

// maxBulk is the largest synchronous bulk upsert; more rows go through an
// import job.
const maxBulk = 1000

// Handler serves the audience API. It does no authentication: mount it
// behind the API keys. Routes (all JSON; errors are
// {"error":{"code","message"}}):
//
//	GET    /api/v1/audiences                                   list audiences
//	POST   /api/v1/audiences                                   create {name, double_opt_in, fields}
//	GET    /api/v1/audiences/{aid}                             one audience with its fields
//	DELETE /api/v1/audiences/{aid}                             delete it and its contacts
//	POST   /api/v1/audiences/{aid}/fields                      declare fields {fields:[{name,type,values}]}
//	GET    /api/v1/audiences/{aid}/contacts                    page: ?segment=ID|NAME or ?where=EXPR, ?after=CURSOR, ?limit=N
//	POST   /api/v1/audiences/{aid}/contacts                    create or update one contact (201 created, 200 updated)
//	PUT    /api/v1/audiences/{aid}/contacts                    bulk upsert {contacts:[...], on_duplicate, tags}: ≤1000 at once (200), more as a job (202, jobs.go)
//	GET    /api/v1/audiences/{aid}/contacts/{cid}              one contact
//	PATCH  /api/v1/audiences/{aid}/contacts/{cid}              update fields of one contact
//	DELETE /api/v1/audiences/{aid}/contacts/{cid}              delete one contact
//	POST   /api/v1/audiences/{aid}/tags                        {contact_ids, add, remove}
//	GET    /api/v1/audiences/{aid}/segments                    saved segments (?counts=1: with their counts, one pass)
//	POST   /api/v1/audiences/{aid}/segments                    save {name, expression}
//	POST   /api/v1/audiences/{aid}/segments/count              count {expression} now
//	POST   /api/v1/audiences/{aid}/segments/preview            first N {expression, limit}
//	GET    /api/v1/audiences/{aid}/segments/{sid}              one segment
//	DELETE /api/v1/audiences/{aid}/segments/{sid}              delete it
//	GET    /api/v1/audiences/{aid}/segments/{sid}/count        count of a saved segment, now
//	GET    /api/v1/audiences/{aid}/segments/{sid}/preview      first ?limit=N contacts
//	POST   /api/v1/audiences/{aid}/imports                     start a CSV import (multipart "file" + "options" JSON, or a text/csv body with options as query parameters)
//	GET    /api/v1/imports/{iid}                               progress
//	GET    /api/v1/imports/{iid}/errors                        row errors (?after=LINE&limit=N, or ?format=csv for all)
//	GET    /api/v1/audiences/{aid}/contacts/{cid}/consent      the consent ledger
//	POST   /api/v1/audiences/{aid}/contacts/{cid}/consent      append {purpose, action, source, ip, user_agent, text_version}
//	GET    /api/v1/audiences/{aid}/contacts/{cid}/export       contact data and ledger
//	POST   /api/v1/audiences/{aid}/contacts/{cid}/erase        erase the person
//	GET    /api/v1/audiences/{aid}/opt-in                      double opt-in confirmation mail (optin_http.go)
//	PUT    /api/v1/audiences/{aid}/opt-in                      set it
//	GET    /api/v1/audiences/{aid}/jobs/{jid}                  bulk upsert job: state and counters
//	GET    /api/v1/audiences/{aid}/jobs/{jid}/errors           its failed rows (?after=INDEX&limit=N)
//	POST   /api/v1/audiences/{aid}/cleanings                   list cleaning through verify {segment, older_than} (202, cleaning.go)
//	GET    /api/v1/audiences/{aid}/cleanings/{jid}             its state and counts
//	GET    /api/v1/audiences/{aid}/contacts/{cid}/verification the contact's last verdict
func Handler(s *Store, o HandlerOptions) http.Handler {
	if o.Context == nil {
		o.Context = context.Background()
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxUpload <= 0 {
		o.MaxUpload = 1 << 30
	}
	h := &handler{s: s, o: o, running: map[string]bool{}}
	if o.ResumeImports {
		pending, err := s.PendingImports(o.Context)
		if err != nil {
			o.Logger.Error("audience: pending imports", "err", err)
		}
		for _, id := range pending {
			h.startImport(id)
		}
		h.resumeContactJobs()
		h.resumeCleanings()
	}
	m := newRouteMux()
	p := "/api/v1/audiences"
	m.HandleFunc("GET "+p, h.listAudiences)
	m.HandleFunc("POST "+p, h.createAudience)
	m.HandleFunc("GET "+p+"/{aid}", h.getAudience)
	m.HandleFunc("DELETE "+p+"/{aid}", h.deleteAudience)
	m.HandleFunc("POST "+p+"/{aid}/fields", h.addFields)
	m.HandleFunc("GET "+p+"/{aid}/contacts", h.listContacts)
	m.HandleFunc("POST "+p+"/{aid}/contacts", h.upsertContact)
	m.HandleFunc("PUT "+p+"/{aid}/contacts", h.bulkUpsert)
	m.HandleFunc("GET "+p+"/{aid}/contacts/{cid}", h.getContact)
	m.HandleFunc("PATCH "+p+"/{aid}/contacts/{cid}", h.patchContact)
	m.HandleFunc("DELETE "+p+"/{aid}/contacts/{cid}", h.deleteContact)
	m.HandleFunc("POST "+p+"/{aid}/tags", h.tags)
	m.HandleFunc("GET "+p+"/{aid}/segments", h.listSegments)
	m.HandleFunc("POST "+p+"/{aid}/segments", h.createSegment)
	m.HandleFunc("POST "+p+"/{aid}/segments/count", h.countExpr)
	m.HandleFunc("POST "+p+"/{aid}/segments/preview", h.previewExpr)
	m.HandleFunc("GET "+p+"/{aid}/segments/{sid}", h.getSegment)
	m.HandleFunc("DELETE "+p+"/{aid}/segments/{sid}", h.deleteSegment)
	m.HandleFunc("GET "+p+"/{aid}/segments/{sid}/count", h.countSegment)
	m.HandleFunc("GET "+p+"/{aid}/segments/{sid}/preview", h.previewSegment)
	m.HandleFunc("POST "+p+"/{aid}/imports", h.createImport)
	m.HandleFunc("GET /api/v1/imports/{iid}", h.getImport)
	m.HandleFunc("GET /api/v1/imports/{iid}/errors", h.importErrors)
	m.HandleFunc("GET "+p+"/{aid}/contacts/{cid}/consent", h.getConsent)
	m.HandleFunc("POST "+p+"/{aid}/contacts/{cid}/consent", h.addConsent)
	m.HandleFunc("GET "+p+"/{aid}/contacts/{cid}/export", h.export)
	m.HandleFunc("POST "+p+"/{aid}/contacts/{cid}/erase", h.erase)
	h.mountOptIn(m, p)
	h.mountJobs(m, p)
	h.mountCleaning(m, p)
	return m
}

type handler struct {
	s *Store
	o HandlerOptions

	mu      sync.Mutex
	running map[string]bool // background jobs running in this process, by kind:id
}

// startImport runs an import job in the background unless it already
// runs in this process (petreld calls it for PendingImports at start).
func (h *handler) startImport(id int64) {
	h.background("import", id, h.s.RunImport)
}

// background runs job kind's run(id) in a goroutine bounded by the
// handler's context, unless that job already runs in this process.
func (h *handler) background(kind string, id int64, run func(context.Context, int64) error) {
	key := fmt.Sprintf("%s:%d", kind, id)
	h.mu.Lock()
	if h.running[key] {
		h.mu.Unlock()
		return
	}
	h.running[key] = true
	h.mu.Unlock()
	go func() {
		defer func() {
			h.mu.Lock()
			delete(h.running, key)
			h.mu.Unlock()
		}()
		if err := run(h.o.Context, id); err != nil && h.o.Context.Err() == nil {
			h.o.Logger.Warn("audience: "+kind+" job failed", kind, id, "err", err)
		}
	}()
}

func (h *handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	var e *Error
	var ee *ExprError
	var mb *http.MaxBytesError
	switch {
	case errors.As(err, &ee):
		httpapi.WriteError(w, http.StatusBadRequest, "invalid_expression", fmt.Sprintf("%d:%d: %s", ee.Line, ee.Column, ee.Message))
	case errors.As(err, &e):
		status := map[Kind]int{Invalid: http.StatusBadRequest, NotFound: http.StatusNotFound, Conflict: http.StatusConflict}[e.Kind]
		httpapi.WriteError(w, status, e.Code, e.Message)
	case errors.As(err, &mb):
		httpapi.WriteError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("request body over %d bytes", mb.Limit))
	default:
		h.o.Logger.Error("audience: request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		httpapi.WriteError(w, http.StatusInternalServerError, "internal", "internal error")
	}
}

func decode(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxJSONBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return err
		}
		return invalid("invalid_json", "request body: %v", err)
	}
	if dec.More() {
		return invalid("invalid_json", "request body: more than one JSON value")
	}
	return nil
}

func pathID(r *http.Request, name string) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue(name), 10, 64)
	if err != nil || id <= 0 {
		return 0, invalid("invalid_id", "%s %q is not an id", name, r.PathValue(name))
	}
	return id, nil
}

// ids parses the path's audience id and, when named, a second id.
func ids(r *http.Request, second string) (int64, int64, error) {
	aid, err := pathID(r, "aid")
	if err != nil || second == "" {
		return aid, 0, err
	}
	id, err := pathID(r, second)
	return aid, id, err
}

func queryInt(r *http.Request, name string, def int64) (int64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, invalid("invalid_query", "%s=%q is not a non-negative integer", name, v)
	}
	return n, nil
}

func (h *handler) listAudiences(w http.ResponseWriter, r *http.Request) {
	as, err := h.s.Audiences(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"audiences": as})
}

func (h *handler) createAudience(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Name        string  `json:"name"`
		DoubleOptIn bool    `json:"double_opt_in"`
		Fields      []Field `json:"fields"`
	}
	if err := decode(w, r, &in); err != nil {
		h.fail(w, r, err)
		return
	}
	a, err := h.s.CreateAudience(r.Context(), Audience{Name: in.Name, DoubleOptIn: in.DoubleOptIn, Fields: in.Fields})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusCreated, a)
}

func (h *handler) getAudience(w http.ResponseWriter, r *http.Request) {
	aid, _, err := ids(r, "")
	if err == nil {
		var a Audience
		if a, err = h.s.Audience(r.Context(), aid); err == nil {
			httpapi.WriteJSON(w, http.StatusOK, a)
			return
		}
	}
	h.fail(w, r, err)
}

func (h *handler) deleteAudience(w http.ResponseWriter, r *http.Request) {
	aid, _, err := ids(r, "")
	if err == nil {
		err = h.s.DeleteAudience(r.Context(), aid)
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *handler) addFields(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Fields []Field `json:"fields"`
	}
	aid, _, err := ids(r, "")
	if err == nil {
		err = decode(w, r, &in)
	}
	var a Audience
	if err == nil {
		a, err = h.s.AddFields(r.Context(), aid, in.Fields)
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, a)
}

// segmentExpr resolves ?segment= (a saved segment's id or name) or
// ?where= (an expression).
func (h *handler) segmentExpr(r *http.Request, aid int64) (string, error) {
	q := r.URL.Query()
	if w := q.Get("where"); w != "" {
		return w, nil
	}
	sg := q.Get("segment")
	if sg == "" {
		return "", nil
	}
	if id, err := strconv.ParseInt(sg, 10, 64); err == nil {
		s, err := h.s.SegmentByID(r.Context(), aid, id)
		return s.Expression, err
	}
	list, err := h.s.Segments(r.Context(), aid)
	if err != nil {
		return "", err
	}
	for _, s := range list {
		if s.Name == sg {
			return s.Expression, nil
		}
	}
	return "", notFound("no segment %q in audience %d", sg, aid)
}

func (h *handler) listContacts(w http.ResponseWriter, r *http.Request) {
	aid, _, err := ids(r, "")
	var expr string
	var after, limit int64
	if err == nil {
		expr, err = h.segmentExpr(r, aid)
	}
	if err == nil {
		after, err = queryInt(r, "after", 0)
	}
	if err == nil {
		limit, err = queryInt(r, "limit", 100)
	}
	var cs []Contact
	var next int64
	if err == nil {
		cs, next, err = h.s.ListContacts(r.Context(), aid, ListOptions{Segment: expr, After: after, Limit: int(limit)})
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out := map[string]any{"contacts": cs}
	if next != 0 {
		out["next"] = strconv.FormatInt(next, 10)
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
}

func (h *handler) upsertContact(w http.ResponseWriter, r *http.Request) {
	var in ContactInput
	aid, _, err := ids(r, "")
	if err == nil {
		err = decode(w, r, &in)
	}
	var c Contact
	var out Outcome
	if err == nil {
		c, out, err = h.s.UpsertContact(r.Context(), aid, in)
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	status := http.StatusOK
	if out == Created {
		status = http.StatusCreated
	}
	httpapi.WriteJSON(w, status, c)
}

func (h *handler) patchContact(w http.ResponseWriter, r *http.Request) {
	var in ContactInput
	aid, cid, err := ids(r, "cid")
	if err == nil {
		err = decode(w, r, &in)
	}
	var c Contact
	if err == nil {
		c, err = h.s.Contact(r.Context(), aid, cid)
	}
	if err == nil && c.Status == Erased {
		err = conflict("erased", "contact %d was erased", cid)
	}
	if err == nil {
		if in.Email != "" {
			if _, k, nerr := NormalizeEmail(in.Email); nerr != nil || !strings.EqualFold(k, c.Email) {
				err = invalid("invalid_request", "the email of a contact cannot be changed; create a new contact")
			}
		}
		in.Email = c.Email
	}
	if err == nil {
		c, _, err = h.s.UpsertContact(r.Context(), aid, in)
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, c)
}

type rowJSON struct {
	Index  int    `json:"index"`
	Result string `json:"result"`
	ID     int64  `json:"id,omitempty"`
	Column string `json:"column,omitempty"`
	Reason string `json:"reason,omitempty"`
}

func (h *handler) bulkUpsert(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Contacts    []ContactInput `json:"contacts"`
		OnDuplicate OnDuplicate    `json:"on_duplicate"`
		Tags        TagMode        `json:"tags"`
	}
	aid, _, err := ids(r, "")
	if err == nil {
		err = decode(w, r, &in)
	}
	o := ImportOptions{OnDuplicate: in.OnDuplicate, Tags: in.Tags}
	if err == nil {
		err = o.check()
	}
	if err == nil && len(in.Contacts) > maxBulk {
		h.bulkJob(w, r, aid, in.Contacts, o.OnDuplicate, o.Tags) // jobs.go
		return
	}
	var res []RowResult
	if err == nil {
		res, err = h.s.UpsertContacts(r.Context(), aid, in.Contacts, o.OnDuplicate, o.Tags)
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	names := map[Outcome]string{Created: "created", Updated: "updated", Skipped: "skipped", Failed: "failed"}
	counts := map[string]int{"created": 0, "updated": 0, "skipped": 0, "failed": 0}
	rows := make([]rowJSON, len(res))
	for i, x := range res {
		rows[i] = rowJSON{Index: i, Result: names[x.Outcome], ID: x.ID, Column: x.Column, Reason: x.Reason}
		counts[names[x.Outcome]]++
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"results": rows, "counts": counts})
}

func (h *handler) getContact(w http.ResponseWriter, r *http.Request) {
	aid, cid, err := ids(r, "cid")
	var c Contact
	if err == nil {
		c, err = h.s.Contact(r.Context(), aid, cid)
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, c)
}

func (h *handler) deleteContact(w http.ResponseWriter, r *http.Request) {
	aid, cid, err := ids(r, "cid")
	if err == nil {
		err = h.s.DeleteContact(r.Context(), aid, cid)
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *handler) tags(w http.ResponseWriter, r *http.Request) {
	var in struct {
		ContactIDs []int64  `json:"contact_ids"`
		Add        []string `json:"add"`
		Remove     []string `json:"remove"`
	}
	aid, _, err := ids(r, "")
	if err == nil {
		err = decode(w, r, &in)
	}
	if err == nil && len(in.ContactIDs) > 100_000 {
		err = invalid("too_many_contacts", "at most 100000 contact ids per request")
	}
	found := 0
	if err == nil && len(in.Add) > 0 {
		found, err = h.s.TagContacts(r.Context(), aid, in.ContactIDs, in.Add, false)
	}
	if err == nil && len(in.Remove) > 0 {
		found, err = h.s.TagContacts(r.Context(), aid, in.ContactIDs, in.Remove, true)
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]int{"contacts": found})
}

func (h *handler) listSegments(w http.ResponseWriter, r *http.Request) {
	aid, _, err := ids(r, "")
	var list []Segment
	if err == nil {
		list, err = h.s.Segments(r.Context(), aid)
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if r.URL.Query().Get("counts") != "1" {
		httpapi.WriteJSON(w, http.StatusOK, map[string]any{"segments": list})
		return
	}
	// ?counts=1: every segment's count, now, in one pass (CountSegments).
	counts, errs, err := h.s.CountSegments(r.Context(), aid, list)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	type counted struct {
		Segment
		Count      *int   `json:"count,omitempty"`
		CountError string `json:"count_error,omitempty"`
	}
	out := make([]counted, len(list))
	for i := range list {
		out[i].Segment = list[i]
		if errs[i] != nil {
			out[i].CountError = errs[i].Error()
		} else {
			out[i].Count = &counts[i]
		}
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"segments": out})
}

func (h *handler) createSegment(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Name       string `json:"name"`
		Expression string `json:"expression"`
	}
	aid, _, err := ids(r, "")
	if err == nil {
		err = decode(w, r, &in)
	}
	var sg Segment
	if err == nil {
		sg, err = h.s.CreateSegment(r.Context(), aid, in.Name, in.Expression)
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusCreated, sg)
}

func (h *handler) getSegment(w http.ResponseWriter, r *http.Request) {
	aid, sid, err := ids(r, "sid")
	var sg Segment
	if err == nil {
		sg, err = h.s.SegmentByID(r.Context(), aid, sid)
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, sg)
}

func (h *handler) deleteSegment(w http.ResponseWriter, r *http.Request) {
	aid, sid, err := ids(r, "sid")
	if err == nil {
		err = h.s.DeleteSegment(r.Context(), aid, sid)
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *handler) count(w http.ResponseWriter, r *http.Request, aid int64, expr string) {
	n, err := h.s.Count(r.Context(), aid, expr)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"count": n, "expression": expr})
}

func (h *handler) preview(w http.ResponseWriter, r *http.Request, aid int64, expr string, limit int64) {
	if limit <= 0 {
		limit = 10
	}
	cs, _, err := h.s.ListContacts(r.Context(), aid, ListOptions{Segment: expr, Limit: int(min(limit, 100))})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"contacts": cs, "expression": expr})
}

type exprBody struct {
	Expression string `json:"expression"`
	Limit      int64  `json:"limit"`
}

func (h *handler) countExpr(w http.ResponseWriter, r *http.Request) {
	var in exprBody
	aid, _, err := ids(r, "")
	if err == nil {
		err = decode(w, r, &in)
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.count(w, r, aid, in.Expression)
}

func (h *handler) previewExpr(w http.ResponseWriter, r *http.Request) {
	var in exprBody
	aid, _, err := ids(r, "")
	if err == nil {
		err = decode(w, r, &in)
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.preview(w, r, aid, in.Expression, in.Limit)
}

func (h *handler) savedSegment(w http.ResponseWriter, r *http.Request) (int64, Segment, bool) {
	aid, sid, err := ids(r, "sid")
	var sg Segment
	if err == nil {
		sg, err = h.s.SegmentByID(r.Context(), aid, sid)
	}
	if err != nil {
		h.fail(w, r, err)
		return 0, sg, false
	}
	return aid, sg, true
}

func (h *handler) countSegment(w http.ResponseWriter, r *http.Request) {
	if aid, sg, ok := h.savedSegment(w, r); ok {
		h.count(w, r, aid, sg.Expression)
	}
}

func (h *handler) previewSegment(w http.ResponseWriter, r *http.Request) {
	aid, sg, ok := h.savedSegment(w, r)
	if !ok {
		return
	}
	limit, err := queryInt(r, "limit", 10)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.preview(w, r, aid, sg.Expression, limit)
}

// importOptionsFromQuery reads ImportOptions from query parameters (for
// a raw text/csv body): on_duplicate, tags, add_tags (comma-separated),
// map.COLUMN=TARGET, consent_purpose, consent_source, consent_text.
func importOptionsFromQuery(r *http.Request) ImportOptions {
	q := r.URL.Query()
	o := ImportOptions{OnDuplicate: OnDuplicate(q.Get("on_duplicate")), Tags: TagMode(q.Get("tags")),
		ConsentPurpose: q.Get("consent_purpose"), ConsentSource: q.Get("consent_source"), ConsentText: q.Get("consent_text")}
	if t := q.Get("add_tags"); t != "" {
		o.AddTags = strings.Split(t, ",")
	}
	for k, v := range q {
		if col, ok := strings.CutPrefix(k, "map."); ok && len(v) > 0 {
			if o.Mapping == nil {
				o.Mapping = map[string]string{}
			}
			o.Mapping[col] = v[0]
		}
	}
	return o
}

func (h *handler) createImport(w http.ResponseWriter, r *http.Request) {
	aid, _, err := ids(r, "")
	if err != nil {
		h.fail(w, r, err)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, h.o.MaxUpload)
	var body io.Reader
	opts := importOptionsFromQuery(r)
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch mt {
	case "multipart/form-data":
		mr, err := r.MultipartReader()
		if err != nil {
			h.fail(w, r, invalid("invalid_request", "multipart: %v", err))
			return
		}
		// "options" (JSON) must come before "file", which is streamed.
		for body == nil {
			part, err := mr.NextPart()
			if err != nil {
				h.fail(w, r, invalid("invalid_request", "multipart: no \"file\" part (%v)", err))
				return
			}
			switch part.FormName() {
			case "options":
				dec := json.NewDecoder(io.LimitReader(part, 1<<20))
				dec.DisallowUnknownFields()
				if err := dec.Decode(&opts); err != nil {
					h.fail(w, r, invalid("invalid_json", "options: %v", err))
					return
				}
			case "file":
				body = part
			}
		}
	case "text/csv", "text/plain", "application/octet-stream", "":
		body = r.Body
	default:
		h.fail(w, r, invalid("unsupported_media_type", "Content-Type %q: send text/csv or multipart/form-data", mt))
		return
	}
	im, err := h.s.CreateImport(r.Context(), aid, opts, body)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.startImport(im.ID)
	w.Header().Set("Location", fmt.Sprintf("/api/v1/imports/%d", im.ID))
	httpapi.WriteJSON(w, http.StatusAccepted, im)
}

func (h *handler) getImport(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "iid")
	var im Import
	if err == nil {
		im, err = h.s.Import(r.Context(), id)
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, im)
}

func (h *handler) importErrors(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "iid")
	if err == nil {
		_, err = h.s.Import(r.Context(), id)
	}
	var after, limit int64
	if err == nil {
		after, err = queryInt(r, "after", 0)
	}
	if err == nil {
		limit, err = queryInt(r, "limit", 1000)
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if r.URL.Query().Get("format") != "csv" {
		errs, err := h.s.ImportErrors(r.Context(), id, after, int(limit))
		if err != nil {
			h.fail(w, r, err)
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, map[string]any{"errors": errs})
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="import-%d-errors.csv"`, id))
	cw := csv.NewWriter(w)
	cw.Write([]string{"line", "column", "reason"})
	for {
		errs, err := h.s.ImportErrors(r.Context(), id, after, 10000)
		if err != nil {
			h.o.Logger.Error("audience: import errors", "import", id, "err", err)
			return // headers are sent; the truncated body tells the client
		}
		for _, e := range errs {
			cw.Write([]string{strconv.FormatInt(e.Line, 10), e.Column, e.Reason})
		}
		if len(errs) < 10000 {
			break
		}
		after = errs[len(errs)-1].Line
	}
	cw.Flush()
}

func (h *handler) getConsent(w http.ResponseWriter, r *http.Request) {
	aid, cid, err := ids(r, "cid")
	if err == nil {
		_, err = h.s.Contact(r.Context(), aid, cid)
	}
	var l []ConsentRecord
	if err == nil {
		l, err = h.s.Consent(r.Context(), aid, cid)
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"consent": l})
}

func (h *handler) addConsent(w http.ResponseWriter, r *http.Request) {
	var in ConsentRecord
	aid, cid, err := ids(r, "cid")
	if err == nil {
		err = decode(w, r, &in)
	}
	if err == nil {
		in.At = in.At.UTC()
		in.ID = 0
		in, err = h.s.RecordConsent(r.Context(), aid, cid, in)
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusCreated, in)
}

func (h *handler) export(w http.ResponseWriter, r *http.Request) {
	aid, cid, err := ids(r, "cid")
	var ex Export
	if err == nil {
		ex, err = h.s.ExportContact(r.Context(), aid, cid)
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="contact-%d.json"`, cid))
	httpapi.WriteJSON(w, http.StatusOK, ex)
}

func (h *handler) erase(w http.ResponseWriter, r *http.Request) {
	aid, cid, err := ids(r, "cid")
	n := 0
	if err == nil {
		n, err = h.s.Erase(r.Context(), aid, cid)
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]int{"erased": n})
}
