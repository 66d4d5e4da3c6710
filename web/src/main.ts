import { createApp } from 'vue'
import { createI18n } from 'vue-i18n'
import App from './App.vue'
import { router } from './router.js'
import { initialLocale, LOCALE_STORAGE_KEY, MESSAGES } from './lib/messages.js'
import './style.css'

const locale = initialLocale(localStorage.getItem(LOCALE_STORAGE_KEY), navigator.languages)
document.documentElement.lang = locale
const i18n = createI18n({ legacy: false, locale, fallbackLocale: 'en', messages: MESSAGES })

createApp(App).use(router).use(i18n).mount('#app')
