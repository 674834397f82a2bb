// External client driver: gorilla/websocket (Debian's golang-github-gorilla-websocket-dev).
//
// Usage: go-client ws://127.0.0.1:PORT/   (against an echo server)
//
// Checks: text echo ("hello websocket"), binary echo, 1 MiB binary echo, a
// ping answered by a pong with the same payload, and a close with code 1000
// answered by the server's close carrying 1000. Exits 0 on success; on failure
// prints one line "go-client: FAIL: ..." and exits 1. Whole run limited to 30 s.
//
// Built offline by tests/setup.sh:
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o target/tests-bin/go-client tests/clients/go/client.go
package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/gorilla/websocket"
)

const timeout = 30 * time.Second

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "go-client: FAIL: "+format+"\n", args...)
	os.Exit(1)
}

func echo(c *websocket.Conn, kind int, payload []byte, what string) {
	if err := c.WriteMessage(kind, payload); err != nil {
		fail("%s: write: %v", what, err)
	}
	gotKind, got, err := c.ReadMessage()
	if err != nil {
		fail("%s: read echo: %v", what, err)
	}
	if gotKind != kind {
		fail("%s: echo has message type %d, want %d", what, gotKind, kind)
	}
	if !bytes.Equal(got, payload) {
		fail("%s: echo differs (%d bytes, want %d)", what, len(got), len(payload))
	}
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: go-client ws://HOST:PORT/PATH")
		os.Exit(2)
	}
	url := os.Args[1]
	deadline := time.Now().Add(timeout)
	time.AfterFunc(timeout, func() { fail("timed out after %v", timeout) })

	// EnableCompression offers "permessage-deflate; server_no_context_takeover;
	// client_no_context_takeover"; with SURGE_EXPECT_EXTENSIONS set the answer must be it.
	dialer := websocket.Dialer{HandshakeTimeout: timeout, EnableCompression: true}
	c, resp, err := dialer.Dial(url, nil)
	if err != nil {
		fail("connect %s: %v", url, err)
	}
	if resp.StatusCode != 101 {
		fail("handshake status %d", resp.StatusCode)
	}
	if expect, ok := os.LookupEnv("SURGE_EXPECT_EXTENSIONS"); ok {
		if got := resp.Header.Get("Sec-WebSocket-Extensions"); got != expect {
			fail("extensions: %q, want %q", got, expect)
		}
	}
	c.SetReadDeadline(deadline)
	c.SetWriteDeadline(deadline)
	c.SetReadLimit(16 << 20)

	echo(c, websocket.TextMessage, []byte("hello websocket"), "text")
	echo(c, websocket.TextMessage, bytes.Repeat([]byte(`{"id":1,"price":100,"side":"buy"},`), 200), "JSON text")
	echo(c, websocket.BinaryMessage, []byte{0, 1, 2, 0xfe, 0xff, 0x80}, "binary")
	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = byte(i*31 + 7)
	}
	echo(c, websocket.BinaryMessage, big, "1MiB binary")

	// Ping: the pong handler runs inside the next read, so follow the ping
	// with a text message; the server answers the ping before echoing it.
	pongs := []string{}
	c.SetPongHandler(func(appData string) error {
		pongs = append(pongs, appData)
		return nil
	})
	if err := c.WriteControl(websocket.PingMessage, []byte("surge-ping"), deadline); err != nil {
		fail("ping: write: %v", err)
	}
	echo(c, websocket.TextMessage, []byte("after ping"), "text after ping")
	// Unsolicited pongs are allowed (RFC 6455 5.5.3); the answer must be there.
	found := false
	for _, p := range pongs {
		found = found || p == "surge-ping"
	}
	if !found {
		// Diagnose: does the pong come late (queued behind the echo) or never?
		c.SetReadDeadline(time.Now().Add(time.Second))
		c.ReadMessage() // returns at the deadline; the pong handler runs meanwhile
		for _, p := range pongs {
			if p == "surge-ping" {
				fail("ping: the pong came after the echo of the message sent after the ping " +
					"(pong queued behind later data; Autobahn 5.6/5.19 check the same)")
			}
		}
		fail("ping: no pong with payload \"surge-ping\" (pongs: %q)", pongs)
	}

	// Close 1000: record the server's close frame without replying to it
	// (we already sent our close).
	closeCode := -1
	c.SetCloseHandler(func(code int, text string) error {
		closeCode = code
		return nil
	})
	msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye")
	if err := c.WriteControl(websocket.CloseMessage, msg, deadline); err != nil {
		fail("close: write: %v", err)
	}
	for {
		_, _, err := c.ReadMessage()
		if err == nil {
			continue // a data message still in flight
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) {
			fail("close: waiting for the server's close frame: %v", err)
		}
		break
	}
	if closeCode != websocket.CloseNormalClosure {
		fail("close: server's close code %d, want 1000", closeCode)
	}
	c.Close()
	fmt.Println("go-client: OK (text, binary, 1 MiB, ping/pong, close 1000)")
}
