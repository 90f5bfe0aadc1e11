package redislock

import (
	"encoding/base64"
	"fmt"
	"strings"
)

// Key layout. Every SKU has two keys that share one hash tag, so they live in
// one Redis Cluster slot and one script can touch both:
//
//	<prefix>lock:{<sku>}   the lock; value: the owner token; expires after LockTTL
//	<prefix>fence:{<sku>}  the fence counter; never expires
//
// <sku> is the SKU in unpadded base64url, whose alphabet holds no '{', '}' or
// ':'. A SKU therefore can neither end the hash tag early (and move its keys
// into the slot of another name) nor forge the key of another SKU: the
// encoding is one-to-one.

// skuKeys returns the lock key and the fence key of sku.
func skuKeys(prefix, sku string) (lock, fence string) {
	tag := "{" + base64.RawURLEncoding.EncodeToString([]byte(sku)) + "}"
	return prefix + "lock:" + tag, prefix + "fence:" + tag
}

// checkPrefix refuses a key prefix whose braces would change which part of a
// key Redis Cluster hashes, splitting a SKU's lock and fence keys across
// slots. A prefix without '{' is fine; so is one holding a complete,
// non-empty hash tag such as "shop{eu}:", which puts every key in that one
// slot.
func checkPrefix(prefix string) error {
	open := strings.IndexByte(prefix, '{')
	if open < 0 {
		return nil
	}
	end := strings.IndexByte(prefix[open+1:], '}')
	if end > 0 {
		return nil
	}
	return fmt.Errorf("redislock: key prefix %q opens a hash tag it does not close with a non-empty name", prefix)
}

// keySlot returns the Redis Cluster slot of key: CRC16 (XMODEM) of its hash
// tag, or of the whole key when it has none, modulo 16384.
func keySlot(key string) int {
	if open := strings.IndexByte(key, '{'); open >= 0 {
		if end := strings.IndexByte(key[open+1:], '}'); end > 0 {
			key = key[open+1 : open+1+end]
		}
	}
	return int(crc16(key) % 16384)
}

// crc16 is CRC-16/XMODEM (polynomial 0x1021, initial value 0), the checksum
// Redis Cluster hashes keys with.
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}
