/** Every architecture's WebGPU kernels register themselves on import (families.ts). */
import './wkv4.ts';
import './wkv5.ts';
import './wkv7.ts';
