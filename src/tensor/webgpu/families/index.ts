/** Every architecture's WebGPU kernels register themselves on import (families.ts). */
import './wkv4.ts';
