package main

import "testing"

func TestByteSize(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantStr string
		wantErr bool
	}{
		{in: "268435456", want: 256 << 20, wantStr: "256MiB"},
		{in: "256MiB", want: 256 << 20, wantStr: "256MiB"},
		{in: "256Mi", want: 256 << 20, wantStr: "256MiB"},
		{in: "4KiB", want: 4 << 10, wantStr: "4KiB"},
		{in: "1GiB", want: 1 << 30, wantStr: "1GiB"},
		{in: "1000B", want: 1000, wantStr: "1000"},
		{in: "0", wantErr: true},
		{in: "-1MiB", wantErr: true},
		{in: "4MB", wantErr: true},
		{in: "9999999999GiB", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var b byteSize
			err := b.Set(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("got %d; want an error", b)
				}
				return
			}
			if err != nil || int64(b) != tt.want {
				t.Fatalf("got %d, %v; want %d", b, err, tt.want)
			}
			if got := b.String(); got != tt.wantStr {
				t.Errorf("String: got %q; want %q", got, tt.wantStr)
			}
		})
	}
}
