package n8nproto

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// wsPair is a real websocket connection over loopback: server is the accepting side (gorilla
// writes a message as one frame there, as Node's ws does), client the dialling side (gorilla
// writes a big message through NextWriter as several frames there).
func wsPair(t *testing.T) (server, client *websocket.Conn) {
	t.Helper()
	accepted := make(chan *websocket.Conn, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			t.Errorf("upgrade: %v", err)
			return
		}
		accepted <- ws
	}))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	client, _, err := websocket.DefaultDialer.DialContext(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case server = <-accepted:
	case <-ctx.Done():
		t.Fatal("no connection accepted")
	}
	t.Cleanup(func() { _ = client.Close(); _ = server.Close() })
	return server, client
}

// The gorilla version in go.mod still has the fields readMessage reads the frame size from: when
// an upgrade renames them, this fails instead of sidecars silently reading big messages at 2.4x.
func TestReadMessageKnowsTheFrameSize(t *testing.T) {
	if !gorillaFrame.ok {
		t.Fatalf("gorilla's websocket.Conn has no readRemaining/readFinal/readDecompress fields of the expected kinds: %+v", gorillaFrame)
	}
	server, client := wsPair(t)
	for _, n := range []int{0, 1, 125, 126, 65535, 65536, 1 << 20} {
		msg := bytes.Repeat([]byte{'x'}, n)
		if err := server.WriteMessage(websocket.TextMessage, msg); err != nil {
			t.Fatal(err)
		}
		if _, _, err := client.NextReader(); err != nil {
			t.Fatal(err)
		}
		if got, ok := gorillaFrame.messageSize(client); !ok || got != n {
			t.Fatalf("message of %d bytes: size %d, known %v", n, got, ok)
		}
	}
}

// A big message is read into one buffer of its size: 32 MiB cost 32 MiB and a little, not the
// 2.4x of io.ReadAll (77 MiB). Messages in several frames (gorilla's client writes them so) are
// read whole too, the old way.
func TestReadMessageAllocatesItsSizeOnce(t *testing.T) {
	server, client := wsPair(t)
	const n = 32 << 20
	msg := bytes.Repeat([]byte("0123456789abcdef"), n/16)
	done := make(chan error, 1)
	go func() { done <- server.WriteMessage(websocket.TextMessage, msg) }()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	got, err := readMessage(client)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("read %d bytes, not the %d sent", len(got), len(msg))
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > n+n/50 {
		t.Errorf("reading a %d MiB message allocated %.1f MiB, want about its size", n>>20, float64(alloc)/(1<<20))
	}

	// Several frames: the client side of gorilla fragments a message it writes through NextWriter.
	frag := msg[:3<<20]
	go func() {
		w, err := client.NextWriter(websocket.TextMessage)
		if err == nil {
			_, err = w.Write(frag)
		}
		if err == nil {
			err = w.Close()
		}
		done <- err
	}()
	_, r, err := server.NextReader()
	if err != nil {
		t.Fatal(err)
	}
	if _, known := gorillaFrame.messageSize(server); known {
		t.Fatal("the first frame of a fragmented message counted as the whole message")
	}
	if b, err := io.ReadAll(r); err != nil || !bytes.Equal(b, frag) {
		t.Fatalf("fragmented message read by gorilla: %d bytes, %v", len(b), err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	go func() { done <- client.WriteMessage(websocket.TextMessage, frag) }()
	got, err = readMessage(server)
	if err != nil || !bytes.Equal(got, frag) {
		t.Fatalf("fragmented message: %d bytes, %v", len(got), err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
