package wedge

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Event is a CloudEvent (specversion 1.0) as a function receives it.
type Event struct {
	ID              string
	Source          string
	Type            string
	SpecVersion     string
	Subject         string
	DataContentType string
	DataSchema      string
	// Time is zero when the event has none.
	Time time.Time
	// Extensions holds every other attribute, by its lower-case name.
	Extensions map[string]string
	Data       []byte
}

type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// Permanent marks err as one that retrying cannot fix: wedge dead-letters
// the event rather than delivering it again.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanent{err}
}

// HandleEvent makes f the function's handler (see EventHandler). Call it
// once, from an init function.
func HandleEvent(f func(context.Context, Event) error) { Serve(EventHandler(f)) }

// EventHandler adapts f into an http.Handler that takes CloudEvents in
// binary mode (ce-* headers, the data as the body: how wedge's MQTT and
// CloudEvents triggers deliver) or structured mode (one
// application/cloudevents+json document). It answers 204 when f returns
// nil; 500 when f fails, so the trigger delivers the event again; 422 for
// a Permanent error, so the trigger dead-letters it; 400 for a request that
// is no valid event.
func EventHandler(f func(context.Context, Event) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ev, err := ReadEvent(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		err = f(r.Context(), ev)
		var p permanent
		switch {
		case err == nil:
			w.WriteHeader(http.StatusNoContent)
		case errors.As(err, &p):
			http.Error(w, err.Error(), http.StatusUnprocessableEntity)
		default:
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
}

// ReadEvent reads the CloudEvent a request carries, in binary or
// structured mode.
func ReadEvent(r *http.Request) (Event, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return Event{}, err
	}
	mediaType, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mediaType == "application/cloudevents+json" {
		return structured(body)
	}
	if mediaType == "application/cloudevents-batch+json" {
		return Event{}, errors.New("batched CloudEvents are not supported: send one event per request")
	}
	ev := Event{Extensions: map[string]string{}, Data: body}
	for name, values := range r.Header {
		lower := strings.ToLower(name)
		if !strings.HasPrefix(lower, "ce-") || len(values) == 0 {
			continue
		}
		v, err := url.PathUnescape(values[0])
		if err != nil {
			return Event{}, fmt.Errorf("header %s: %v", name, err)
		}
		if err := ev.set(lower[3:], v); err != nil {
			return Event{}, err
		}
	}
	ev.DataContentType = r.Header.Get("Content-Type")
	return ev, ev.check()
}

func (ev *Event) set(attr, v string) error {
	switch attr {
	case "id":
		ev.ID = v
	case "source":
		ev.Source = v
	case "type":
		ev.Type = v
	case "specversion":
		ev.SpecVersion = v
	case "subject":
		ev.Subject = v
	case "datacontenttype":
		ev.DataContentType = v
	case "dataschema":
		ev.DataSchema = v
	case "time":
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return fmt.Errorf("attribute time: %v", err)
		}
		ev.Time = t
	default:
		ev.Extensions[attr] = v
	}
	return nil
}

func (ev *Event) check() error {
	if ev.SpecVersion != "1.0" {
		return fmt.Errorf("not a CloudEvent 1.0: specversion is %q", ev.SpecVersion)
	}
	for _, a := range [][2]string{{"id", ev.ID}, {"source", ev.Source}, {"type", ev.Type}} {
		if a[1] == "" {
			return fmt.Errorf("the event has no %s", a[0])
		}
	}
	return nil
}

func structured(body []byte) (Event, error) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(body, &doc); err != nil {
		return Event{}, fmt.Errorf("structured event: %v", err)
	}
	ev := Event{Extensions: map[string]string{}}
	for k, raw := range doc {
		switch k {
		case "data", "data_base64":
			continue
		}
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			return Event{}, fmt.Errorf("attribute %s: %v", k, err)
		}
		var s string
		switch x := v.(type) {
		case string:
			s = x
		case nil:
			continue
		case float64, bool:
			s = strings.TrimSpace(string(raw))
		default:
			return Event{}, fmt.Errorf("attribute %s: not a string, number or boolean", k)
		}
		if err := ev.set(k, s); err != nil {
			return Event{}, err
		}
	}
	if raw, ok := doc["data_base64"]; ok {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return Event{}, fmt.Errorf("data_base64: %v", err)
		}
		data, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return Event{}, fmt.Errorf("data_base64: %v", err)
		}
		ev.Data = data
	} else if raw, ok := doc["data"]; ok {
		var s string
		if !jsonType(ev.DataContentType) && json.Unmarshal(raw, &s) == nil {
			ev.Data = []byte(s)
		} else {
			ev.Data = []byte(raw)
		}
	}
	if ev.DataContentType == "" && ev.Data != nil {
		ev.DataContentType = "application/json"
	}
	return ev, ev.check()
}

func jsonType(contentType string) bool {
	if contentType == "" {
		return true
	}
	mt, _, _ := mime.ParseMediaType(contentType)
	return mt == "application/json" || mt == "text/json" || strings.HasSuffix(mt, "+json")
}
