package registry

import "strings"

// Redis Cluster slot computation (CRC16/XMODEM of the hash tag, mod 16384), so the registry can
// group keys by slot without asking the server, and tests can prove keys share a slot.

// KeySlot returns the cluster slot of key, honouring hash tags ({...}) like Redis does: only the
// part between the first '{' and the next '}' is hashed, unless that part is empty.
func KeySlot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return int(crc16(key) % 16384)
}

func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for b := 0; b < 8; b++ {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// SlotGroups splits fns into groups whose call streams can be read by one XREADGROUP. On a
// standalone or Sentinel client that is one group; on Cluster, one group per slot. Dispatchers on
// Cluster get the lowest latency by running one ReadCalls loop per group.
func (r *Registry) SlotGroups(fns []FunctionKey) [][]FunctionKey {
	if !r.cluster {
		return [][]FunctionKey{fns}
	}
	bySlot := map[int]int{}
	var out [][]FunctionKey
	for _, fn := range fns {
		s := KeySlot(r.k.calls(fn))
		i, ok := bySlot[s]
		if !ok {
			i = len(out)
			bySlot[s] = i
			out = append(out, nil)
		}
		out[i] = append(out[i], fn)
	}
	return out
}
